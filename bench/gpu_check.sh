#!/usr/bin/env bash
# The checks that need CUDA, in one script: the four tiny stages in bf16 on the GPU, QLoRA with bitsandbytes' CUDA
# kernels, DeepSpeed ZeRO-3 and FSDP2 on the GPUs found, and the memory of a real-size (Qwen2.5-Omni-3B) model.
#
#   bash bench/gpu_check.sh [WORKDIR]          # from the repository root, in the project's environment
#
# Everything is built offline (tiny model, synthetic data); nothing is downloaded. Each check prints PASS or FAIL with
# its log file, and the script goes on after a failure; the summary at the end lists them all, and the exit status
# is the number of failures. With one GPU the distributed checks run one process (the sharded code paths, without a
# second rank); with two or more they run on two.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-gpu-check}"
mkdir -p "$WORK" && cd "$WORK"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false

RECIPES="$ROOT/recipes/tiny"
GPUS=$(python -c "import torch; print(torch.cuda.device_count())")
RANKS=$(( GPUS >= 2 ? 2 : 1 ))
FAILED=()
PASSED=()

check() {  # check NAME COMMAND...: run, log to logs/NAME.log, record the outcome
    local name="$1"; shift
    mkdir -p logs
    local started=$SECONDS
    if "$@" > "logs/$name.log" 2>&1; then
        PASSED+=("$name"); echo "PASS $name ($((SECONDS - started)) s)"
    else
        FAILED+=("$name"); echo "FAIL $name ($((SECONDS - started)) s): see $WORK/logs/$name.log"; tail -5 "logs/$name.log"
    fi
}

echo "== $(python -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'), $GPUS GPU(s)"
[ "$GPUS" -ge 1 ] || { echo "no CUDA device"; exit 1; }

check inputs bash -c "aurora-trl tiny --out models/tiny --sam-size 128 && aurora-trl data synth --out data/synth --clips 20 \
    && aurora-trl data build --refavs-root data/synth --out data/synth-ds --stage1 data/synth/stage1_cot.json \
       --stage2 data/synth/stage2_reflective.jsonl"

ON_GPU=(--use_cpu False --dtype bfloat16 --bf16 True --save_strategy no --logging_steps 1)
SHORT=(--dataset_name data/synth-ds --max_steps 4)

# 1. bf16 on CUDA, every stage, each from the previous stage's merged model
check bf16-teacher python "$RECIPES/teacher.yaml" "${SHORT[@]}" "${ON_GPU[@]}" --model_name_or_path models/tiny \
    --output_dir runs/tiny-teacher
check bf16-sft python "$RECIPES/sft.yaml" "${SHORT[@]}" "${ON_GPU[@]}" --model_name_or_path runs/tiny-teacher/merged \
    --output_dir runs/tiny-sft
check bf16-reflect python "$RECIPES/reflect.yaml" "${SHORT[@]}" "${ON_GPU[@]}" --model_name_or_path runs/tiny-sft/merged \
    --teacher_model_name_or_path runs/tiny-teacher/merged --output_dir runs/tiny-reflect
check bf16-grpo python "$RECIPES/grpo.yaml" "${SHORT[@]}" "${ON_GPU[@]}" --model_name_or_path runs/tiny-reflect/merged \
    --max_completion_length 16 --output_dir runs/tiny-grpo
check bf16-eval aurora-trl eval --model runs/tiny-grpo/merged --data data/synth-ds --out runs/eval --limit 4 \
    --max-new-tokens 16

# 2. QLoRA with the CUDA 4-bit kernels
check qlora-sft python "$RECIPES/sft.yaml" "${SHORT[@]}" "${ON_GPU[@]}" --load_in_4bit True \
    --model_name_or_path runs/tiny-teacher/merged --output_dir runs/qlora-sft
check qlora-grpo python "$RECIPES/grpo.yaml" "${SHORT[@]}" "${ON_GPU[@]}" --load_in_4bit True \
    --model_name_or_path runs/tiny-reflect/merged --max_completion_length 16 --output_dir runs/qlora-grpo

# 3. sharded training on the GPUs found: the probe records what each rank holds (tests/distributed_probe.py)
launch() {  # launch CONFIG RECIPE OUT [options]
    local config="$1" recipe="$2" out="$3"; shift 3
    PYTHONPATH="$ROOT" accelerate launch --config_file "$ROOT/recipes/accelerate/$config" --num_processes "$RANKS" \
        "$ROOT/tests/distributed_probe.py" "$RECIPES/$recipe.yaml" "${SHORT[@]}" "${ON_GPU[@]}" \
        --model_name_or_path runs/tiny-teacher/merged --output_dir "$out" "$@" \
        && cat "$out"/probe-rank*.json && test -f "$out/merged/model.safetensors"
}
check zero3-sft launch zero3.yaml sft runs/zero3-sft
check zero3-grpo launch zero3.yaml grpo runs/zero3-grpo --max_completion_length 16
check fsdp-sft launch fsdp.yaml sft runs/fsdp-sft
check fsdp-grpo launch fsdp.yaml grpo runs/fsdp-grpo --max_completion_length 16

# 4. memory of the real-size 3B model: counted on the meta device, then one AdamW step measured on the GPU
check memory python "$ROOT/bench/bench_memory.py" --device cuda --json memory.json
cat logs/memory.log

echo "== passed: ${#PASSED[@]} (${PASSED[*]:-none}); failed: ${#FAILED[@]} (${FAILED[*]:-none})"
exit "${#FAILED[@]}"
