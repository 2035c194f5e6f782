#!/usr/bin/env bash
# Inference speed on a GPU machine, in one go: installs the project beside the machine's
# own torch, then prints images/s, each stage's cost and the GPU's utilisation.
#
#   benchmarks/gpu_check.sh DATA MODEL_FOLDER [WHEELS]
#
# DATA: a folder of images (e.g. a subset of BUSI); MODEL_FOLDER: a folder from
# `tumorseg export`; WHEELS: a folder of wheels for what the machine lacks (MONAI and
# pydicom; a machine that can reach PyPI leaves it out). Ray is not needed: the figures
# are in-process (`segment_batch`), the bulk job's and Serve's need a Ray install.
set -euo pipefail
data=$(realpath "${1:?DATA}")
model=$(realpath "${2:?MODEL_FOLDER}")
wheels=${3:+$(realpath "$3")}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n $wheels ]]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --upgrade \
        --target /tmp/tumorseg-site "$wheels"/*.whl
    export PYTHONPATH=/tmp/tumorseg-site
fi
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$here/benchmarks"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

echo "== the multi-scale FCN's route against one gray-net pass; GPU against CPU masks"
"$python" bench_multiscale.py --data "$data" --model-folder "$model" --images 64 --compare-cpu
"$python" bench_multiscale.py --data "$data" --preset gpu --images 64 --batch-size 64

echo "== the fused pipeline, in process (each image ${REPEAT:-8} times), batches of 64"
for share in policy 0.2 1.0; do
    route=()
    [[ $share == policy ]] || route=(--fcn-share "$share")
    "$python" bench_segment.py --data "$data" --model-folder "$model" --in-process-only \
        --repeat "${REPEAT:-8}" --batch-size 64 "${route[@]}"
done
"$python" bench_segment.py --data "$data" --preset gpu --in-process-only \
    --repeat "${REPEAT:-8}" --batch-size 64 --fcn-share 0.2
