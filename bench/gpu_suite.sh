#!/usr/bin/env bash
# The GPU benchmarks of BENCHMARKS.md in one call of the device machine.
#
# From the repository root on the GPU machine, with `gpu/` holding the MASSIVE archive
# (massive.tar.gz), the XLM-R tokenizer files (tokenizer/) and pydantic's wheels (whl/):
#
#     bench/gpu_suite.sh OUT [PART ...]      # default: graphs eager together (7 minutes)
#
# graphs    train.cuda_graphs checked against eager training; throughput of e5-small- and
#           XLM-R-base-size models; a 2-locale VANILLA run and the cost of one score cell
# eager     the same without graphs, on the same machine
# together  the 52 NON-SHARED LoRA adapters trained one by one and together (4 minutes;
#           after a part that writes the XLM-R-base-size model: graphs, eager, lora, trim)
# lora      SHARED-LoRA-style r16 throughput, graphed (graphs checked) and eager, the
#           frozen base in bf16 as xlcl stores it; graphed again with it in fp32
# trim      the graphed VANILLA run with the vocabulary trimmed (trim_vocabulary)
# compile   throughput of torch.compile inside the graphs (about 3 minutes of compiling;
#           the run config refuses the pair, train_step itself takes it)
# Each part has its own time limit, so a failing part leaves the others' results in OUT.
set -u
out=${1:?usage: bench/gpu_suite.sh OUT [PART ...]}
shift
parts=${*:-graphs eager together}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site gpu/whl/*.whl
export PYTHONPATH=src:/tmp/site PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export XLCL_MASSIVE=gpu/massive.tar.gz
quiet() { grep --line-buffered -v -e "Loading weights" -e "Writing model" -e "it/s]"; }
gpu() {  # gpu PART SECONDS ARGS...: bench/gpu.py into OUT/PART
    local part=$1 seconds=$2
    shift 2
    timeout "$seconds" python3 bench/gpu.py --archive gpu/massive.tar.gz \
        --tokenizer gpu/tokenizer --out "$out/$part" "$@" 2>&1 | quiet | tee "$out/$part.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
for part in $parts; do
    case $part in
        graphs) gpu graphs 180 --cuda-graphs --locales 2 ;;
        eager) gpu eager 120 --locales 1 ;;
        lora) gpu lora 120 --models xlm-r-base --lora 16 --cuda-graphs --locales 0 \
            && gpu lora-eager 120 --models xlm-r-base --lora 16 --locales 0 \
            && gpu lora-fp32-base 60 --models xlm-r-base --lora 16 --cuda-graphs \
                --fp32-base --locales 0 ;;
        trim) gpu trim 120 --models xlm-r-base --samples 2048 --cuda-graphs --trim --locales 2 ;;
        compile) gpu compile 330 --models xlm-r-base --compile --cuda-graphs --samples 2048 \
            --locales 0 ;;
        together)
            timeout 260 python3 bench/bench_scaling.py --model /tmp/xlcl-gpu/xlm-r-base \
                --parts nonshared --locales 52 --nonshared-utterances 400 \
                --output "$out/together.md" 2>&1 | quiet | tee "$out/together.log" ;;
        *) echo "unknown part: $part" >&2 ;;
    esac
done
