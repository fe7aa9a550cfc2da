"""metabnn: metaplastic binarized neural networks, from continual-learning training to FPGA."""

__version__ = "0.1.0"
