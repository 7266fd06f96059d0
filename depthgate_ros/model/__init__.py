"""Pure-PyTorch model: backbone, depth-aware gating, recurrent refinement, heads, losses.

Nothing in this package imports ROS."""
from .config import ModelConfig
from .depth_bins import disparity_to_depth, quantile_edges, quantize_depth, sensor_gate
from .network import DepthGatedNet

__all__ = ["ModelConfig", "DepthGatedNet", "disparity_to_depth", "quantile_edges",
           "quantize_depth", "sensor_gate"]
