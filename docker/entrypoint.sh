#!/bin/sh
# Source the mounted Vivado/Vitis settings when XILINX_VIVADO points at them, then run the command.
set -e
if [ -n "$XILINX_VIVADO" ] && [ -f "$XILINX_VIVADO/settings64.sh" ]; then
    # shellcheck disable=SC1091
    . "$XILINX_VIVADO/settings64.sh"
fi
export FINN_BUILD_DIR="${FINN_BUILD_DIR:-/tmp/finn_build}"
exec "$@"
