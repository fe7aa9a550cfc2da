# metabnn + FINN (finn-plus 1.6.1) build image. Vivado is NOT in the image: mount the host's
# Xilinx install and set XILINX_VIVADO, as FINN's own images expect, e.g.
#   docker build -t metabnn .
#   docker run --rm -v /tools/Xilinx:/tools/Xilinx -e XILINX_VIVADO=/tools/Xilinx/Vivado/2024.2 \
#     -v "$PWD:/work" -w /work metabnn \
#     metabnn build exports/pmnist --board pynq-z2 --target-fps 100000 --out builds/pmnist
# Without the mount the same command stops before IP generation and says what needs Vivado.
FROM ubuntu:22.04

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# Vivado/Vitis HLS need libtinfo5/libncurses5 and a C++ toolchain; git fetches FINN's sources.
# Unpinned apt packages: the base image tag fixes the Ubuntu release, and jammy's point
# releases drop old package versions, so exact pins would break the build.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-pip python3-dev build-essential git ca-certificates \
        libtinfo5 libncurses5 libglib2.0-0 libsm6 libxrender1 libxext6 libxtst6 libxi6 \
        unzip zip locales \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/metabnn
COPY pyproject.toml constraints.txt requirements-finn.txt README.md ./
COPY src ./src
# The DESIGN.md recipe: torch first, FINN's declared requirements (minus its brevitas pin),
# then metabnn, then finn-plus without its dependencies.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install -c constraints.txt -r requirements-finn.txt \
    && pip install -c constraints.txt . \
    && pip install --no-deps finn-plus==1.6.1

# finn-hlslib at finn-plus's pinned commit and the board files, fetched now so that a
# build in the container needs no network.
COPY docker/fetch_finn_deps.py /opt/metabnn/docker/
RUN python docker/fetch_finn_deps.py

COPY docker/entrypoint.sh /usr/local/bin/metabnn-entrypoint
RUN chmod +x /usr/local/bin/metabnn-entrypoint
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/metabnn-entrypoint"]
CMD ["metabnn", "--help"]
