#!/usr/bin/env bash
# Install metabnn's one tested stack (constraints.txt) into a virtual environment, creating it if
# it is absent. `make install` (and so CI's `make test` on a fresh clone) and the Dockerfile both
# run this script, so the image gets exactly what CI tests.
#
#   scripts/install-stack.sh [--editable] [--tests] VENV
#
#   --editable  install metabnn in development mode (make); the image installs a copy
#   --tests     also the test extra (pytest, hadolint); the workstation extra always
#   PYTHON      the interpreter that makes VENV (default python3); it must be Python >= 3.11
#   METABNN_TORCH_INDEX_URL  take torch from this index, e.g. https://download.pytorch.org/whl/cpu
#               for the CPU build (PyPI's Linux torch wheel is the CUDA one); unset: the ordinary index
#
# The FINN stack: finn-plus 1.6.1 pins brevitas 0.13.0, which is
# broken on our torch, so its real dependencies come from requirements-finn.txt and finn-plus
# itself is installed with --no-deps. `pip check` must then object to that brevitas pin only.
set -euo pipefail

die() { echo "install-stack: error: $*" >&2; exit 2; }

editable="" extras=""
while [ $# -gt 0 ]; do
    case "$1" in
        --editable) editable="-e"; shift ;;
        --tests) extras="[test]"; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        -*) die "unknown option $1; use --editable, --tests and a VENV directory" ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || die "give one VENV directory, e.g. scripts/install-stack.sh --editable --tests .venv"
venv="$1"
cd "$(dirname "$0")/.."

pin() {  # the version constraints.txt pins for package $1
    local v
    v="$(grep -i "^$1==" constraints.txt | head -n1 | cut -d= -f3)"
    [ -n "$v" ] || die "constraints.txt pins no version of $1"
    echo "$v"
}

need_311() {  # $1: interpreter, $2: how to name it in the message
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
        || die "metabnn needs Python >= 3.11 ($2 is $("$1" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null \
               || echo 'not runnable')); set PYTHON=python3.11 (or newer), e.g. make PYTHON=python3.11"
}

if [ ! -x "$venv/bin/python" ]; then
    python="${PYTHON:-python3}"
    command -v "$python" >/dev/null || die "'$python' is not on PATH; set PYTHON to a Python >= 3.11"
    need_311 "$python" "'$python'"
    "$python" -m venv "$venv"
fi
need_311 "$venv/bin/python" "the Python in $venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)

"${pip[@]}" --upgrade "pip>=24"
if [ -n "${METABNN_TORCH_INDEX_URL:-}" ]; then
    # torch alone from that index; its own dependencies come with the next step, under the pins
    "${pip[@]}" --no-deps --index-url "$METABNN_TORCH_INDEX_URL" "torch==$(pin torch)"
fi
# the workstation extra: metabnn's base install is the board's (numpy only), without torch & co.
"${pip[@]}" -c constraints.txt ${editable:+"$editable"} ".[workstation${extras:+,test}]"
"${pip[@]}" -c constraints.txt -r requirements-finn.txt
"${pip[@]}" --no-deps -c constraints.txt "finn-plus==$(pin finn-plus)"

# The stack must be consistent but for finn-plus's brevitas pin, and import.
problems="$("$venv/bin/python" -m pip check 2>&1 | grep -v -E '^finn-plus [^ ]+ has requirement brevitas==' \
            | grep -v -E '^(No broken requirements|$)' || true)"
[ -z "$problems" ] || die "the installed stack is inconsistent: $(echo "$problems" | tr '\n' ';')"
"$venv/bin/python" -c 'import metabnn, torch, brevitas, qonnx, finn.util.basic' \
    || die "the stack installed but does not import (see above)"
echo "install-stack: metabnn, torch $(pin torch), finn-plus $(pin finn-plus) in $venv"
