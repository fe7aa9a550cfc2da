"""metabnn: metaplastic binarized neural networks, from continual-learning training to FPGA."""

import os as _os

# A resumed run must end bit-identical to an uninterrupted one, so BLAS must give the same
# bits for the same inputs in every process. oneMKL (inside torch's CPU wheel) by default
# lets its kernel and thread choice vary from call to call (CNR off, dynamic threads).
# MKL reads these at its first call, so they hold when metabnn is imported before torch
# does any maths; a value the user set is kept. Measured cost here: none (train_throughput).
_os.environ.setdefault("MKL_CBWR", "AUTO")
_os.environ.setdefault("MKL_DYNAMIC", "FALSE")

__version__ = "0.1.0"
