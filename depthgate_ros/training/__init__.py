"""Training: configuration, datasets and sampling, the stage-wise loop, DDP set-up."""
