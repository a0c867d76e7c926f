#!/usr/bin/env bash
# The cryoSPHERE peer venv for benchmarks/peers/cryosphere_run.py: its own venv, never the
# project's. torch first, pinned to the CPU wheel this machine caches (any other version pulls
# the CUDA wheels, gigabytes). cryoSPHERE 0.6.1 lists the nvidia-*-cu12 wheels and triton as
# hard requirements, so it goes in with --no-deps, then its requirements less torch, nvidia-*
# and triton. torchvision (imported by cryosphere.model.dataset, not listed) is left out on
# purpose: its PyPI wheel is a CUDA build that fails to import beside torch+cpu; the harness
# stubs the one function cryoSPHERE uses (transforms.functional.resize).
#
#   bash benchmarks/peers/setup_cryosphere.sh [DIR]      # default DIR: /work/peers/cryosphere
#
# Re-running it on an existing venv only checks it. CRYOSPHERE_VERSION overrides the pin.
set -euo pipefail

DIR="${1:-/work/peers/cryosphere}"
TORCH="torch==2.13.0"
CRYOSPHERE="cryosphere==${CRYOSPHERE_VERSION:-0.6.1}"
PY="${PYTHON:-python3}"

if [ ! -x "$DIR/bin/cryosphere_train" ]; then
    "$PY" -m venv "$DIR"
    "$DIR/bin/pip" install --quiet "$TORCH"
    "$DIR/bin/pip" install --quiet --no-deps "$CRYOSPHERE"
    reqs=$("$DIR/bin/python" - <<'EOF'
from importlib.metadata import requires
skip = ("torch", "nvidia-", "triton")
print(" ".join(r.split(";")[0].replace(" ", "") for r in requires("cryosphere") or []
               if "extra ==" not in r and not r.lower().startswith(skip)))
EOF
)
    # shellcheck disable=SC2086
    "$DIR/bin/pip" install --quiet $reqs "$TORCH"
fi

"$DIR/bin/python" - <<'EOF'
from importlib.metadata import version
import torch
print("cryosphere", version("cryosphere"), "torch", torch.__version__, "cuda", torch.cuda.is_available())
EOF
# cryoSPHERE imports torchvision at module level; check it imports with the harness's stub.
"$DIR/bin/python" - <<'EOF'
import sys, types
for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
    sys.modules.setdefault(name, types.ModuleType(name))
import cryosphere.cryosphere_train, cryosphere.data.analyze  # noqa: F401
print("cryosphere imports: ok")
EOF
echo "cryoSPHERE venv ready: $DIR"
