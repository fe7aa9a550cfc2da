# metabnn + FINN (finn-plus 1.6.1) build image. Vivado is NOT in the image: mount the host's
# Xilinx install (Vivado and Vitis HLS, 2022.2 or 2024.2: the versions finn-plus 1.6.1 names)
# and set XILINX_VIVADO, as FINN's own images expect. Mount the work at the same path as on the
# host, so a build made outside the container can get its bitstream inside it:
#   docker build -t metabnn .
#   docker run --rm -v /tools/Xilinx:/tools/Xilinx -e XILINX_VIVADO=/tools/Xilinx/Vivado/2024.2 \
#     -v "$PWD:$PWD" -w "$PWD" metabnn \
#     metabnn build exports/pmnist --board pynq-z2 --target-fps 100000 --out builds/pmnist
# Without XILINX_VIVADO the same command stops before the Vivado steps and says what needs them.
#
# Base: Debian 12 (bookworm) with Python 3.11, the oldest Python the pinned stack supports
# (numpy 2.4, scipy 1.17, onnxruntime 1.25, finn-plus 1.6.1, contourpy 1.3, pillow 13 need
# >= 3.11; Ubuntu 22.04 has 3.10), and bookworm still ships libtinfo5 and libncurses5, which
# Vivado and Vitis HLS load (Ubuntu 24.04, the first Ubuntu with Python >= 3.11, no longer does).
# AMD lists Ubuntu and RHEL hosts; inside a container what matters is these libraries.
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# What Vivado/Vitis HLS load in batch mode (ncurses 5, X11 client libraries for the tools' Java
# and Tcl, a C++ toolchain and libc headers for HLS), git to fetch FINN's sources, and make.
# Unpinned apt packages: the base image tag fixes the Debian release, and its point releases
# drop old package versions, so exact pins would break the build.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential libc6-dev git ca-certificates make \
        libtinfo5 libncurses5 libglib2.0-0 libsm6 libxrender1 libxext6 libxtst6 libxi6 libx11-6 \
        libfreetype6 fontconfig unzip zip locales \
    && rm -rf /var/lib/apt/lists/*

# The same install script as `make install` and CI, into /opt/venv; torch from PyTorch's CPU
# index (PyPI's Linux torch is the CUDA build, gigabytes the image does not need).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /opt/metabnn
COPY pyproject.toml constraints.txt requirements-finn.txt README.md ./
COPY scripts/install-stack.sh ./scripts/
COPY src ./src
RUN METABNN_TORCH_INDEX_URL="$TORCH_INDEX_URL" PYTHON=python3 bash scripts/install-stack.sh /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# finn-hlslib at finn-plus's pinned commit and the board files, fetched now so that a build in
# the container needs no network.
COPY docker/fetch_finn_deps.py /opt/metabnn/docker/
RUN python docker/fetch_finn_deps.py

COPY docker/entrypoint.sh /usr/local/bin/metabnn-entrypoint
RUN chmod +x /usr/local/bin/metabnn-entrypoint
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/metabnn-entrypoint"]
CMD ["metabnn", "--help"]
