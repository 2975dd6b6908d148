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
#           after a part that writes the XLM-R-base-size model: graphs, eager, lora, trim,
#           scoring)
# lora      SHARED-LoRA-style r16 throughput, graphed (graphs checked) and eager, the
#           frozen base in bf16 as xlcl stores it; graphed again with it in fp32
# trim      the graphed VANILLA run with the vocabulary trimmed (trim_vocabulary)
# compile   throughput of torch.compile inside the graphs (about 3 minutes of compiling;
#           the run config refuses the pair, train_step itself takes it)
# pack-lora K = 1, 2, 4, 8 processes training graphed XLM-R-base-size LoRA r16 at once on the
#           one GPU, without and then with an MPS daemon (`xlcl sweep --runs-per-gpu K`):
#           samples/s summed over the K processes against one alone, in OUT/pack-lora.json
#           (not run yet: 5-8 minutes expected, mostly the processes' start-ups)
# pack-full the same for full fine-tuning (as long)
# e5-large  E5-large-instruct-size training (random-weight XLM-R large: 24 layers, hidden 1024,
#           560M parameters; no hub here): graphs checked against eager, then samples/s
#           graphed and eager on the same 2,048 samples, in OUT/e5-large.json with the ratio
#           (not run yet: 1.5-2 minutes expected, a third of it writing and loading the model)
# scoring   a row of the score matrix (order 1's first 6 test sets, 17,844 utterances) on a
#           random-weight XLM-R-base-size model, cell by cell against in one pass, bf16 and
#           fp32, batches of 128 and 512; in OUT/scoring/gpu.json (not run yet: about
#           1.5 minutes expected, half of it reading and encoding the test sets)
# group     SHARED LoRA r16 runs trained as one group (`xlcl sweep --group-lora`) of 1, 5 and
#           15 runs, each run 4 locales of 400 utterances, one epoch a step, against one run
#           alone; the group of 15 also with per-segment LoRA matmuls and with CUDA graphs:
#           samples/s ratio in OUT/group.json (not run yet: 4-6 minutes expected, mostly
#           each run's reading and encoding of the archive; after a part that writes the
#           XLM-R-base-size model, as together)
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
pack() {  # pack KIND ARGS...: K copies of bench/gpu.py at once, K = 1 2 4 8, MPS off then on
    local kind=$1 dir="$out/pack-$kind"
    shift
    # Writes the model once: bench/gpu.py writes it at every start, so K processes starting
    # together would race on its files; the packed ones read this copy instead.
    gpu "pack-$kind-model" 120 --models xlm-r-base --samples 64 --locales 0 "$@"
    local reuse="import sys; sys.path.insert(0, 'bench'); import gpu
gpu.model_dir = lambda root, name, config, tokenizer: root / name
sys.argv[0] = 'bench/gpu.py'; gpu.main()"
    for mps in off on; do
        if [ $mps = on ]; then
            command -v nvidia-cuda-mps-control >/dev/null || { echo "no MPS here" >&2; break; }
            # Short paths: the daemon's pipes are Unix sockets.
            export CUDA_MPS_PIPE_DIRECTORY=/tmp/xlcl-mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/xlcl-mps/log
            mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
            nvidia-cuda-mps-control -d || break
        fi
        for k in 1 2 4 8; do
            for i in $(seq "$k"); do
                timeout 240 python3 -c "$reuse" --archive gpu/massive.tar.gz \
                    --tokenizer gpu/tokenizer --out "$dir/mps-$mps/k$k/$i" \
                    --models xlm-r-base --locales 0 "$@" >"$dir/mps-$mps-k$k-$i.log" 2>&1 &
            done
            wait
        done
        if [ $mps = on ]; then
            echo quit | nvidia-cuda-mps-control
            unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
        fi
    done
    python3 - "$dir" <<'SUMMARY' | tee "$out/pack-$kind.json"
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
rows = {}
for mps in ("off", "on"):
    for k in (1, 2, 4, 8):
        files = sorted(root.glob(f"mps-{mps}/k{k}/*/gpu.json"))
        rates = [json.loads(f.read_text())["throughput/xlm-r-base"]["samples_per_s"] for f in files]
        if rates:
            rows[f"mps-{mps}/k{k}"] = {"finished": len(rates), "samples_per_s": sum(rates)}
alone = rows.get("mps-off/k1", {}).get("samples_per_s")
for row in rows.values():
    row["against_one_alone"] = row["samples_per_s"] / alone if alone else None
print(json.dumps(rows, indent=2))
SUMMARY
}
graphed_over_eager() {  # graphed_over_eager PART MODEL: OUT/PART/gpu.json's figures in OUT/PART.json
    python3 - "$out/$1/gpu.json" "$2" <<'SUMMARY' | tee "$out/$1.json"
import json, pathlib, sys
path, name = pathlib.Path(sys.argv[1]), sys.argv[2]
found = json.loads(path.read_text()) if path.exists() else {}
graphed, eager = found.get(f"throughput/{name}", {}), found.get(f"throughput-eager/{name}", {})
print(json.dumps({
    "model": f"{name} size, random weights",
    "device": found.get("device"),
    "graphs_against_eager": found.get(f"graphs_against_eager/{name}"),
    "graphed_samples_per_s": graphed.get("samples_per_s"),
    "eager_samples_per_s": eager.get("samples_per_s"),
    "graphed_over_eager": found.get(f"graphed_over_eager/{name}"),
    "mfu": {"graphed": graphed.get("mfu"), "eager": eager.get("mfu")},
    "peak_memory_gib": {"graphed": graphed.get("peak_memory_gib"), "eager": eager.get("peak_memory_gib")},
}, indent=2))
SUMMARY
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
        pack-lora) pack lora --lora 16 --cuda-graphs ;;
        pack-full) pack full --cuda-graphs ;;
        e5-large) gpu e5-large 300 --models e5-large-instruct --samples 2048 --cuda-graphs \
            --against-eager --locales 0
            graphed_over_eager e5-large e5-large-instruct ;;
        scoring) gpu scoring 240 --models --scoring 6 --locales 0 ;;
        compile) gpu compile 330 --models xlm-r-base --compile --cuda-graphs --samples 2048 \
            --locales 0 ;;
        group)  # after a part that writes the XLM-R-base-size model, as together
            timeout 420 python3 bench/bench_group_lora.py --model /tmp/xlcl-gpu/xlm-r-base \
                --groups 1 5 15 --locales 4 --utterances 400 --out "$out/group.json" 2>&1 \
                | quiet | tee "$out/group.log" ;;
        together)
            timeout 260 python3 bench/bench_scaling.py --model /tmp/xlcl-gpu/xlm-r-base \
                --parts nonshared --locales 52 --nonshared-utterances 400 \
                --output "$out/together.md" 2>&1 | quiet | tee "$out/together.log" ;;
        *) echo "unknown part: $part" >&2 ;;
    esac
done
