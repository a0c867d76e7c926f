#!/usr/bin/env bash
# The cryoDRGN peer venv for benchmarks/drgnai_speed.py (and the other peer benchmarks):
# its own venv, never the project's. torch first, pinned to the CPU wheel this machine
# caches (any other version pulls the CUDA wheels, gigabytes), then cryoDRGN, whose
# requirements (torch>=2, numpy, healpy, ...) accept torch 2.13.0 as it is.
#
#   bash benchmarks/peers/setup_cryodrgn.sh [DIR]      # default DIR: /work/peers/cryodrgn
#
# Re-running it on an existing venv only checks it. CRYODRGN_VERSION overrides the pin.
set -euo pipefail

DIR="${1:-/work/peers/cryodrgn}"
TORCH="torch==2.13.0"
CRYODRGN="cryodrgn==${CRYODRGN_VERSION:-4.3.1}"
PY="${PYTHON:-python3}"

if [ ! -x "$DIR/bin/cryodrgn" ]; then
    "$PY" -m venv "$DIR"
    "$DIR/bin/pip" install --quiet "$TORCH"
    if ! "$DIR/bin/pip" install --quiet "$CRYODRGN" "$TORCH"; then
        # pins that conflict with this torch: cryoDRGN alone, then its requirements less torch
        "$DIR/bin/pip" install --quiet --no-deps "$CRYODRGN"
        reqs=$("$DIR/bin/python" - <<'EOF'
from importlib.metadata import requires
print(" ".join(r.split(";")[0].replace(" ", "") for r in requires("cryodrgn") or []
               if "extra ==" not in r and not r.startswith("torch")))
EOF
)
        # shellcheck disable=SC2086
        "$DIR/bin/pip" install --quiet $reqs "$TORCH"
    fi
fi

"$DIR/bin/cryodrgn" --version
"$DIR/bin/python" -c "import torch; print('torch', torch.__version__)"
"$DIR/bin/cryodrgn" abinit --help >/dev/null
echo "cryoDRGN venv ready: $DIR"
