#!/usr/bin/env bash
# The GPU checks in one command, sized for one device call of at most 8 minutes:
# install the carried wheels beside the machine's own torch, run the `gpu` tests, run the
# GPU ingest benchmark (scripts/bench_gpu.py), and write everything under $OUT.
#
# On a machine without network (the lent GPU machine). First, here:
#     scripts/gpu_wheels.sh                 # fills .whl/ (ignored by git, ~27 MiB)
# then one device call, from the repository root:
#     run  command="bash scripts/gpu_check.sh"  carry=[".whl"]  timeout_s=480
# On any CUDA machine with the project installed, `bash scripts/gpu_check.sh` works too
# (no .whl/: nothing is installed).
#
# Results ($OUT, or ./gpu-check-out): gpu_check.log (all output), env.txt (card, driver,
# versions), pytest.txt, gpu_bench.json and gpu_bench.md (the snippet for the GPU
# section of docs/benchmarks.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
PY="${PYTHON:-python3}"
IMAGES="${GPU_CHECK_IMAGES:-20000}"
started=$(date +%s)
elapsed() { echo "$(( $(date +%s) - started )) s"; }

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    echo "installed $(ls .whl | wc -l) carried wheels into /tmp/site ($(elapsed))"
else
    echo "no .whl/ here: using the installed packages (scripts/gpu_wheels.sh fills it)"
fi
export PYTHONPATH="$PWD:$PWD/protos${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
    "$PY" - <<'EOF'
import platform, sys
import faiss, numpy, open_clip, PIL, torch, torchvision
print("python", sys.version.split()[0], platform.machine())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"{p.total_memory / 2**30:.1f} GiB", p.multi_processor_count, "SMs")
print("torchvision", torchvision.__version__, "open_clip", open_clip.__version__,
      "faiss", faiss.__version__, "gpus for faiss", faiss.get_num_gpus(),
      "numpy", numpy.__version__, "Pillow", PIL.__version__)
EOF
} 2>&1 | tee "$OUT/env.txt"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "no CUDA device visible: nothing to check"; exit 1; }

# The gpu-marked tests, from the files that hold them (collecting the whole suite would
# import the web and Ray extras, which this machine lacks).
mapfile -t gpu_files < <(grep -rl "mark.gpu" tests --include="test_*.py" | sort)
echo "gpu tests in: ${gpu_files[*]} ($(elapsed))"
timeout 150 "$PY" -m pytest -m gpu -v -p no:cacheprovider "${gpu_files[@]}" 2>&1 \
    | tee "$OUT/pytest.txt"
tests_rc=${PIPESTATUS[0]}
echo "gpu tests exit $tests_rc ($(elapsed))"

# The benchmark writes gpu_bench.json after each part, so a timeout still leaves numbers.
timeout 290 "$PY" scripts/bench_gpu.py --out "$OUT" --images "$IMAGES"
bench_rc=$?
echo "benchmark exit $bench_rc ($(elapsed))"
exit $(( tests_rc != 0 || bench_rc != 0 ))
