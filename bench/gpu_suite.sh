#!/usr/bin/env bash
# Every GPU benchmark of BENCHMARKS.md in one call of the device machine (about 8 minutes).
#
# From the repository root on the GPU machine, with `gpu/` holding the MASSIVE archive
# (massive.tar.gz), the XLM-R tokenizer files (tokenizer/) and pydantic's wheels (whl/):
#
#     bench/gpu_suite.sh OUT
#
# 1. train.cuda_graphs: checked against eager training, throughput of e5-small- and
#    XLM-R-base-size models, a 2-locale VANILLA run and the cost of one score cell;
# 2. the same without graphs (eager), on the same machine;
# 3. the 52 NON-SHARED LoRA adapters trained one by one and together.
# Each part has its own time limit, so a failing part leaves the others' results in OUT.
set -u
out=${1:?usage: bench/gpu_suite.sh OUT}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site gpu/whl/*.whl
export PYTHONPATH=src:/tmp/site PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export XLCL_MASSIVE=gpu/massive.tar.gz
quiet() { grep --line-buffered -v -e "Loading weights" -e "Writing model" -e "it/s]"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
common=(--archive gpu/massive.tar.gz --tokenizer gpu/tokenizer --locales 2)
timeout "${GRAPHS_S:-180}" python3 bench/gpu.py "${common[@]}" --cuda-graphs \
    --out "$out/graphs" 2>&1 | quiet | tee "$out/graphs.log"
timeout "${EAGER_S:-120}" python3 bench/gpu.py "${common[@]}" --locales 1 \
    --models xlm-r-base e5-small --out "$out/eager" 2>&1 | quiet | tee "$out/eager.log"
timeout "${TOGETHER_S:-240}" python3 bench/bench_scaling.py --model /tmp/xlcl-gpu/xlm-r-base \
    --parts nonshared --locales "${TOGETHER_LOCALES:-52}" --nonshared-utterances 400 \
    --output "$out/together.md" 2>&1 | quiet | tee "$out/together.log"
