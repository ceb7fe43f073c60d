"""GRPO step benchmark: AuroraGRPOTrainer against TRL's GRPOTrainer with and without audio, interleaved.

    python bench/bench_grpo.py [--steps 14] [--generations 3] [--completion-lengths 16 128] [--sam-size 128]
                               [--chunk 4] [--warmup 2] [--threads 1]

Three sides run in this process on the same tiny backbone (the AURORA checkpoint loads as a plain Qwen2.5-Omni
thinker for TRL), the same LoRA policy, G, completion length and `suppress_tokens`:

- `trl-plain`: TRL's `GRPOTrainer` on the 10 frames only (the audio block stripped from the prompts), format reward.
- `trl-av`: TRL's `GRPOTrainer` with the same audio-visual inputs as ours (`AudioVisualGRPOTrainer` below: the same
  10 frames and ~250 audio tokens per prompt, in generation and in every forward), format reward only, no SAM, no
  IoU. This is the fair baseline: ours / trl-av is the price of the SAM masks, the IoU reward and the mask loss.
- `ours`: `AuroraGRPOTrainer` (format, class and IoU rewards; the rollout mask loss).

Each completion length is its own run of the three sides, interleaved in chunks of `--chunk` optimizer steps
(`common.run_interleaved`), so load from other jobs lands on all of them. A step is timed from the end of the side's
previous step to its `on_step_end` (the data loader's fetch included, `dataloader_num_workers=0`); figures are
medians after `--warmup` steps per side, of wall time and of the thread's CPU time; the ratios are given from the
medians and paired by round (see bench_sft.py). Completion tokens are counted from the generation output. A random
tiny model rarely ends a completion early, but it can: every side generates with `min_new_tokens` =
`max_new_tokens` = the completion length (the end-of-turn tokens are masked until then), so that every side
generates the same number of tokens and the ratios compare equal work. The share table of trl-av and ours (exclusive times of wrapped methods,
`common.RegionProfiler`) says where their steps go.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import (  # noqa: E402
    TIMED_TRAINING,
    RegionProfiler,
    peak_rss_line,
    ratio_line,
    run_interleaved,
    share_table,
    tiny_setup,
)
from trl import GRPOTrainer  # noqa: E402

from aurora_trl.data_row import decode_audio  # noqa: E402


AUDIO_KEYS = ("input_features", "feature_attention_mask")
TARGET = 1.3  # ours / trl-av at completion length 128
SIDES = ("trl-plain", "trl-av", "ours")
# Region labels of the share table; each wrapped method is timed under one of them.
GENERATION, FORWARD_BACKWARD, SAM, DATA = (
    "generation",
    "policy forward + backward",
    "SAM masks, IoU, rewards",
    "data",
)


def without_audio_blocks(prompt: list[dict]) -> list[dict]:
    """The prompt without its audio block (TRL runs its processor on the text with images only)."""
    return [
        {**m, "content": [b for b in m["content"] if b.get("type") != "audio"]}
        if isinstance(m["content"], list)
        else m
        for m in prompt
    ]


def with_audio(prompt: list[dict], waveform) -> list[dict]:
    """The prompt with the waveform as the first block of its user message (where the data set's template has it)."""
    out, done = [], False
    for message in prompt:
        if message["role"] == "user" and not done:
            message = {**message, "content": [{"type": "audio", "audio": waveform}, *message["content"]]}
            done = True
        out.append(message)
    return out


class AudioVisualGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer that hears the clip: the same audio-visual prompts as AuroraGRPOTrainer, nothing else.

    TRL 1.16 passes images but not audio. The waveform is decoded per row and the audio block stripped before TRL's
    own processor call (it runs the processor on the prompt text with images only); `_tokenize_prompts` puts the
    waveform back, so generation hears it; every log-prob forward gets the Whisper features of its rows.
    """

    def _generate_and_score_completions(self, inputs):
        self._waveforms = [decode_audio(row["audio"]) for row in inputs]
        features = self.processing_class.feature_extractor(
            self._waveforms,
            sampling_rate=16000,
            padding="max_length",
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = self.accelerator.device
        self._audio = {
            "input_features": features["input_features"].to(device),
            "feature_attention_mask": features["attention_mask"].to(device),
        }
        stripped = [{**row, "prompt": without_audio_blocks(row["prompt"])} for row in inputs]
        output = super()._generate_and_score_completions(stripped)
        # first dimension = completions: TRL shuffles and splits the features with the rest of the batch
        output.update(self._audio)
        return output

    def _tokenize_prompts(self, prompts):
        return super()._tokenize_prompts([with_audio(p, w) for p, w in zip(prompts, self._waveforms)])

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, **kwargs
    ):
        audio = self._audio
        # one chunk for all rows: the audio features are per row and TRL's chunking does not slice them
        return super()._get_per_token_logps_and_entropies(
            lambda **model_inputs: model(**model_inputs, **audio),
            input_ids,
            attention_mask,
            logits_to_keep,
            batch_size=input_ids.size(0),
            **kwargs,
        )

    def _compute_loss(self, model, inputs):
        # TRL may pass the same buffered slice again: read the features from a copy, never pop them from the buffer
        inputs = dict(inputs)
        self._audio = {key: inputs.pop(key) for key in AUDIO_KEYS}
        return super()._compute_loss(model, inputs)


class TokenCounter:
    """Counts the completion tokens a trainer generates (wraps its `_generate_single_turn` on the instance)."""

    def __init__(self, trainer):
        self.tokens = 0
        generate = trainer._generate_single_turn

        def counted(*args, **kwargs):
            completion_ids, logprobs = generate(*args, **kwargs)
            self.tokens += sum(len(ids) for ids in completion_ids)
            return completion_ids, logprobs

        trainer._generate_single_turn = counted

    def __call__(self) -> float:
        """Tokens since the last call (one step's)."""
        tokens, self.tokens = self.tokens, 0
        return tokens


def profile(trainer, with_aurora: bool) -> RegionProfiler:
    """Wrap the methods a step spends its time in (see the region labels above)."""
    profiler = RegionProfiler()
    profiler.wrap(trainer, "_generate_single_turn", GENERATION)
    profiler.wrap(trainer, "_get_per_token_logps_and_entropies", FORWARD_BACKWARD)
    profiler.wrap(trainer.accelerator, "backward", FORWARD_BACKWARD)
    # TRL's reward step: the reward functions and (today) ours' no-grad `[SEG]` forward for the IoU
    profiler.wrap(trainer, "_calculate_rewards", SAM)
    if with_aurora:
        from aurora_trl.modeling.modeling_aurora import unwrap_aurora_model

        base = unwrap_aurora_model(trainer.model)
        for method in ("predict_masks", "encode_images"):
            profiler.wrap(base, method, SAM)
    # the rest of the rollout: audio decoding, SAM pre-processing, processor calls, padding
    profiler.wrap(trainer, "_generate_and_score_completions", DATA)
    return profiler


def build_sides(args, train, processor, tiny, work: Path, length: int) -> dict:
    """The three trainers for one completion length, fresh models each, in turn order."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration
    from trl import GRPOConfig

    from aurora_trl.modeling import AuroraForSegmentation
    from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy, lora_config, wrap_with_lora
    from aurora_trl.rewards import format_reward
    from aurora_trl.trainers.grpo_config import AuroraGRPOConfig
    from aurora_trl.trainers.grpo_trainer import AuroraGRPOTrainer

    g = args.generations
    common = dict(
        max_steps=args.steps,
        per_device_train_batch_size=g,
        num_generations=g,
        max_completion_length=length,
        **TIMED_TRAINING,
    )
    # every completion exactly `length` tokens (see the module docstring)
    same_length = {"min_new_tokens": length}
    model = apply_training_policy(AuroraForSegmentation.from_pretrained(tiny), TrainingPolicy())
    ours = AuroraGRPOTrainer(
        model=model,
        args=AuroraGRPOConfig(output_dir=str(work / f"ours-{length}"), generation_kwargs=same_length, **common),
        train_dataset=train,
        processing_class=processor,
    )
    # ours adds the multimodal markers and the pad token to suppress_tokens; TRL's sides get the same list
    generation = {**same_length, "suppress_tokens": ours.args.generation_kwargs["suppress_tokens"]}
    config = lora_config(model.get_base_model())
    config.modules_to_save = None  # the thinker has no projector or SAM; the [SEG] rows train as ours

    def trl_side(cls, name: str, dataset):
        thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny)
        return cls(
            model=wrap_with_lora(thinker, config),
            reward_funcs=[format_reward],
            args=GRPOConfig(output_dir=str(work / f"{name}-{length}"), generation_kwargs=generation, **common),
            train_dataset=dataset,
            processing_class=processor,
        )

    images_only = train.map(lambda row: {"prompt": without_audio_blocks(row["prompt"])})
    return {
        "trl-plain": trl_side(GRPOTrainer, "trl-plain", images_only),
        "trl-av": trl_side(AudioVisualGRPOTrainer, "trl-av", train),
        "ours": ours,
    }


def report(args, length: int, run) -> None:
    sides = run.sides
    print(
        f"GRPO step, completion length {length}: 1 clip x G={args.generations}, SAM {args.sam_size} px, "
        f"{args.threads} torch thread(s); the three sides interleaved in chunks of {args.chunk} steps, medians of "
        f"{sides['ours'].measured} steps after {args.warmup} warm-up steps per side"
    )
    print(run.load_line())
    print(
        f"  {'side':<10} {'wall/step':>10} {'CPU/step':>10} {'tokens/step':>12} {'tokens/s':>9} {'tokens/CPU-s':>13}"
    )
    for side, stats in sides.items():
        wall, cpu, tokens = stats.median("wall"), stats.median("cpu"), stats.median("items")
        print(f"  {side:<10} {wall:8.3f} s {cpu:8.3f} s {tokens:12.0f} {tokens / wall:9.1f} {tokens / cpu:13.1f}")
    for a, b in (("ours", "trl-av"), ("ours", "trl-plain"), ("trl-av", "trl-plain")):
        print(f"  ratio {a + ' / ' + b:<19} {ratio_line(sides[a], sides[b], args.chunk)}")
    print(f"  target: ours <= {TARGET}x trl-av at completion length 128")
    print("  where a step goes (exclusive times per measured step, and shares; data includes the fetch):")
    profiled = {side: sides[side] for side in ("trl-av", "ours")}
    print("\n".join(share_table(profiled, [GENERATION, FORWARD_BACKWARD, SAM], data_region=DATA)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=14, help="optimizer steps per side, warm-up included")
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--completion-lengths", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--sam-size", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=4, help="steps a side runs before the next side's turn")
    parser.add_argument("--warmup", type=int, default=2, help="steps per side left out of the medians")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU times cover all compute)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    train, processor, tiny = tiny_setup(work, args.sam_size)
    for index, length in enumerate(args.completion_lengths):
        trainers = build_sides(args, train, processor, tiny, work, length)
        counters = {side: TokenCounter(trainer) for side, trainer in trainers.items()}
        profilers = {side: profile(trainers[side], side == "ours") for side in ("trl-av", "ours")}
        run = run_interleaved(trainers, args.chunk, args.warmup, items=counters, profilers=profilers)
        if index:
            print()
        report(args, length, run)
        del trainers, counters, profilers, run
    print(peak_rss_line())


if __name__ == "__main__":
    main()
