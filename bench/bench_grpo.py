"""GRPO step benchmark: AuroraGRPOTrainer against TRL's GRPOTrainer, and SAM decoding with and without the cache.

    python bench/bench_grpo.py [--steps 10] [--generations 3] [--completion-length 16] [--sam-size 128]

Both trainers run in this process on the same tiny backbone (the AURORA checkpoint loads as a plain Qwen2.5-Omni
thinker for TRL), the same LoRA policy, G and completion length. TRL's trainer gets the 10 frames and a text
reward only: it cannot pass audio. Ours adds the audio, the `[SEG]` forward for the IoU reward, the mask decoding
and the mask loss. Step times are medians after two warm-up steps. The SAM part times the masks of one group of G
rollouts when each rollout encodes the clip (no cache) against one encoding shared through the cache.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import StepTimer, tiny_setup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--completion-length", type=int, default=16)
    parser.add_argument("--sam-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import Qwen2_5OmniThinkerForConditionalGeneration
    from trl import GRPOConfig, GRPOTrainer

    from aurora_trl.modeling import AuroraForSegmentation
    from aurora_trl.modeling.embedding_cache import SamEmbeddingCache
    from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy, lora_config, wrap_with_lora
    from aurora_trl.modeling.sam import preprocess_frames
    from aurora_trl.rewards import format_reward
    from aurora_trl.trainers.grpo_config import AuroraGRPOConfig
    from aurora_trl.trainers.grpo_trainer import AuroraGRPOTrainer, without_audio_blocks

    work = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    train, processor, tiny = tiny_setup(work, args.sam_size)
    g = args.generations
    common = dict(
        max_steps=args.steps,
        per_device_train_batch_size=g,
        num_generations=g,
        max_completion_length=args.completion_length,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        gradient_checkpointing=False,
        logging_steps=100,
        seed=0,
    )

    model = apply_training_policy(AuroraForSegmentation.from_pretrained(tiny), TrainingPolicy())
    ours_timer = StepTimer()
    ours = AuroraGRPOTrainer(
        model=model,
        args=AuroraGRPOConfig(output_dir=str(work / "ours"), **common),
        train_dataset=train,
        processing_class=processor,
        callbacks=[ours_timer],
    )
    ours.train()

    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny)
    config = lora_config(model.get_base_model())
    config.modules_to_save = None  # the thinker has no projector or SAM; the [SEG] rows train as ours
    images_only = train.map(lambda row: {"prompt": without_audio_blocks(row["prompt"])})
    plain_timer = StepTimer()
    suppress = ours.args.generation_kwargs["suppress_tokens"]
    plain = GRPOTrainer(
        model=wrap_with_lora(thinker, config),
        reward_funcs=[format_reward],
        args=GRPOConfig(output_dir=str(work / "plain"), generation_kwargs={"suppress_tokens": suppress}, **common),
        train_dataset=images_only,
        processing_class=processor,
        callbacks=[plain_timer],
    )
    plain.train()

    ours_step, plain_step = statistics.median(ours_timer.times[2:]), statistics.median(plain_timer.times[2:])
    print(
        f"GRPO step, 1 clip x G={g}, {args.completion_length} new tokens, SAM {args.sam_size} px, "
        f"{args.threads} threads, median of {len(ours_timer.times) - 2} steps"
    )
    print(f"  AuroraGRPOTrainer (audio + frames, IoU reward, mask loss)  {ours_step:.3f} s")
    print(f"  TRL GRPOTrainer (frames only, text reward)                 {plain_step:.3f} s")
    print(f"  ratio                                                      {ours_step / plain_step:.2f}x")

    # SAM decoding for one group: encode per rollout vs once through the cache
    base = model.get_base_model()
    row = train[0]
    sam = preprocess_frames([img.convert("RGB") for img in row["images"]], args.sam_size)
    seg = torch.randn(g, base.config.sam_prompt_dim)

    def without_cache():
        pixels = sam.pixel_values[None].expand(g, *sam.pixel_values.shape)
        return base.predict_masks(
            seg, pixel_values=pixels, input_sizes=sam.input_size, original_sizes=sam.original_size
        )

    def with_cache():
        cache = SamEmbeddingCache()
        embeddings = cache.get_or_compute(base, row["vid"], sam.pixel_values)[None]
        return base.predict_masks(
            seg, image_embeddings=embeddings, input_sizes=sam.input_size, original_sizes=sam.original_size
        )

    with torch.no_grad():
        timings = {}
        for name, fn in (("without cache", without_cache), ("with cache", with_cache)):
            fn()
            runs = []
            for _ in range(7):
                start = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - start)
            timings[name] = statistics.median(runs)
    print(f"SAM masks for one group of G={g} (10 frames), median of 7")
    for name, value in timings.items():
        print(f"  {name:<14} {value:.4f} s")
    print(f"  ratio          {timings['without cache'] / timings['with cache']:.2f}x")


if __name__ == "__main__":
    main()
