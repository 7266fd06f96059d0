"""Datasets, label tables and paired augmentation (no ROS imports)."""
