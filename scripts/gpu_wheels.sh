#!/usr/bin/env bash
# Fill .whl/ with the wheels scripts/gpu_check.sh installs on the lent GPU machine.
#
# That machine has CUDA PyTorch, torchvision, numpy, Pillow, grpcio, huggingface_hub,
# regex, safetensors, timm, tqdm, protobuf and pytest, but no network: what the project
# needs beyond them travels as wheels (the device tool's `carry`, 64 MiB in all with the
# working tree). Only Python 3.12 x86-64 wheels are fetched, at the versions of
# constraints.txt, each with --no-deps: the machine's own torch must stay.
#   open-clip-torch, ftfy, wcwidth   the model (timm is optional to open_clip and there)
#   faiss-cpu                        the index (faiss-gpu needs CUDA 12 libraries: too big)
#   protobuf, grpcio,                the committed generated code checks protobuf >= 7.35
#   grpcio-health-checking,          and grpcio >= 1.85.1 at import; the machine's may be
#   grpcio-reflection                older, so the pinned ones travel too
#
# Usage: scripts/gpu_wheels.sh [PYTHON]   (PYTHON: any python with pip; default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-python3}"
DEST=.whl
LIMIT_MIB=48  # leaves the working tree (a few MiB) room under the 64 MiB carry limit

pin() {  # the version constraints.txt pins, else the one given
    local v
    v=$(grep -i "^$1==" constraints.txt | cut -d= -f3 || true)
    echo "$1==${v:-$2}"
}

WHEELS=(
    "$(pin open-clip-torch 3.3.0)"
    "ftfy==6.3.1"
    "wcwidth==0.9.4"
    "$(pin faiss-cpu 1.15.1)"
    "$(pin protobuf 7.36.2)"
    "$(pin grpcio 1.85.1)"
    "$(pin grpcio-health-checking 1.85.1)"
    "$(pin grpcio-reflection 1.85.1)"
)

grep -qx '/.whl/' .gitignore 2>/dev/null || grep -qx '/.whl/' .git/info/exclude 2>/dev/null \
    || echo '/.whl/' >> "$(git rev-parse --git-path info/exclude)"
rm -rf "$DEST"
mkdir -p "$DEST"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$DEST" "${WHEELS[@]}"

size_kib=$(du -sk "$DEST" | cut -f1)
ls -1 "$DEST"
echo "$(ls "$DEST" | wc -l) wheels, $((size_kib / 1024)) MiB in $DEST"
if (( size_kib > LIMIT_MIB * 1024 )); then
    echo "over ${LIMIT_MIB} MiB: the device call would refuse the working tree" >&2
    exit 1
fi
