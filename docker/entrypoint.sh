#!/bin/sh
# Source the mounted Xilinx settings when XILINX_VIVADO points at them (Vivado's, and Vitis HLS's
# where the installer puts it beside Vivado), then run the command. metabnn finds Vitis HLS by
# itself too and says in one line what is missing.
set -e
if [ -n "$XILINX_VIVADO" ] && [ -f "$XILINX_VIVADO/settings64.sh" ]; then
    # shellcheck disable=SC1091
    . "$XILINX_VIVADO/settings64.sh"
    for hls in "$(echo "$XILINX_VIVADO" | sed 's#/Vivado/#/Vitis_HLS/#')" \
               "$(echo "$XILINX_VIVADO" | sed 's#/Vivado/#/Vitis/#')"; do
        if [ -z "$XILINX_HLS" ] && [ "$hls" != "$XILINX_VIVADO" ] && [ -f "$hls/settings64.sh" ]; then
            # shellcheck disable=SC1090
            . "$hls/settings64.sh"
        fi
    done
fi
exec "$@"
