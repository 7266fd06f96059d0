"""depthgate_ros: depth-gated recurrent scene parsing (Kong & Fowlkes, CVPR 2018) for ROS 2."""
__version__ = "0.1.0"
