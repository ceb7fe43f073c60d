"""SFT step benchmark: AuroraSFTTrainer against TRL's plain SFTTrainer, interleaved, and where an AURORA step goes.

    python bench/bench_sft.py [--clips 3] [--epochs 4] [--batch 2] [--sam-size 128] [--chunk 4] [--threads 1]

Both sides run in this process, on the same tiny backbone (the AURORA checkpoint loads as a plain Qwen2.5-Omni
thinker for TRL), the same LoRA policy and the same rows:

- `ours`: `AuroraSFTTrainer` with its defaults (Stage-1 reasoning target, mask BCE + Dice, `[SEG]` distillation at
  the config's default weight, the teacher being the adapter-disabled policy), collating with its own
  `AuroraCollator` (language-model inputs, SAM frames, masks, the teacher's ids).
- `trl`: TRL's `SFTTrainer` with `AuroraCollator(processor, sam_size, "reasoning", with_masks=False)`: the same
  language-model inputs (ids, labels, the 10 frames, the audio features), no SAM frames or masks, so it does not pay
  for our SAM pre-processing.

The sides alternate in chunks of `--chunk` optimizer steps, each driven by its own `trainer.train()`
(`common.run_interleaved`), so load from other jobs on this shared machine lands on both. A step is timed from the
end of the side's previous step (or its resumption) to its `on_step_end`: the data loader's fetch and the
collation are included (`dataloader_num_workers=0`, so collation runs in the measured thread). Training runs for
`--epochs` epochs over the rows of `--clips` clips. The first epoch fills our caches (the teacher's `[SEG]` embedding
of each row, SAM's embeddings of each clip), as the first epoch of a real run does; the headline figures are the
medians over the later epochs, and the first epoch's medians are given next to them. Figures: wall time, the
thread's CPU time, rows per second (batch / median step). The ratio
ours / TRL is given from the two medians and paired by round (the median, over the rounds, of the ratio of the two
sides' medians within the round, which cancels a slow drift of the load). It is the price of AURORA's extra work per
step (SAM frames, masks and their losses, the teacher's forward), not a slowdown on the same work. The split of each
side comes from wrapping the trainer's and the model's methods (`common.RegionProfiler`), as exclusive times over
the measured steps.
"""

import argparse
import os
import statistics
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


NAMES = {"trl": "TRL SFTTrainer", "ours": "AuroraSFTTrainer"}
TARGET = 1.4


FORWARD_BACKWARD, SAM, TEACHER = "forward + backward", "SAM (forward)", "teacher forward"


def profile(trainer, with_aurora: bool) -> RegionProfiler:
    """Wrap the methods a step spends its time in (the loss's forward, the backward; ours: SAM, the teacher)."""
    profiler = RegionProfiler()
    profiler.wrap(trainer, "compute_loss", FORWARD_BACKWARD)  # the LLM forward and the losses
    profiler.wrap(trainer.accelerator, "backward", FORWARD_BACKWARD)  # LLM and SAM decoder backward
    if with_aurora:
        from aurora_trl.modeling.modeling_aurora import unwrap_aurora_model

        base = unwrap_aurora_model(trainer.model)
        for method in ("predict_masks", "encode_images"):
            profiler.wrap(base, method, SAM)
        if hasattr(trainer, "_teacher_seg_embeddings"):  # a private name: timed while it exists
            profiler.wrap(trainer, "_teacher_seg_embeddings", TEACHER)
    return profiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=3, help="synthetic clips (about 3 rows each)")
    parser.add_argument("--epochs", type=int, default=4, help="the first one fills the caches and is reported apart")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sam-size", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=4, help="steps a side runs before the other side's turn")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU times cover all compute)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import Qwen2_5OmniThinkerForConditionalGeneration
    from trl import SFTConfig, SFTTrainer

    from aurora_trl.modeling import AuroraForSegmentation
    from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy, lora_config, wrap_with_lora
    from aurora_trl.trainers.collator import AuroraCollator
    from aurora_trl.trainers.sft_config import AuroraSFTConfig
    from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer

    work = Path(tempfile.mkdtemp(prefix="bench_sft_"))
    train, processor, tiny = tiny_setup(work, args.sam_size, clips=args.clips)
    epoch_steps = -(-len(train) // args.batch)
    common = dict(
        max_steps=args.epochs * epoch_steps,
        per_device_train_batch_size=args.batch,
        **TIMED_TRAINING,
    )

    model = apply_training_policy(AuroraForSegmentation.from_pretrained(tiny), TrainingPolicy())
    ours = AuroraSFTTrainer(
        model=model,
        args=AuroraSFTConfig(output_dir=str(work / "ours"), **common),
        train_dataset=train,
        processing_class=processor,
    )
    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny)
    config = lora_config(model.get_base_model())
    config.modules_to_save = None  # the thinker has no projector or SAM; the [SEG] rows train as ours
    plain = SFTTrainer(
        model=wrap_with_lora(thinker, config),
        args=SFTConfig(
            output_dir=str(work / "trl"),
            remove_unused_columns=False,
            dataset_kwargs={"skip_prepare_dataset": True},
            **common,
        ),
        train_dataset=ours.train_dataset,  # the rows ours kept (with reasoning text, within max_length)
        processing_class=processor,
        data_collator=AuroraCollator(processor, args.sam_size, "reasoning", with_masks=False),
    )

    trainers = {"trl": plain, "ours": ours}
    profilers = {side: profile(trainer, side == "ours") for side, trainer in trainers.items()}
    run = run_interleaved(
        trainers,
        chunk=args.chunk,
        warmup=epoch_steps,
        items={side: (lambda: args.batch) for side in trainers},
        profilers=profilers,
    )

    sides = run.sides
    print(
        f"SFT step, batch {args.batch}, {len(train)} rows of {args.clips} clips, SAM {args.sam_size} px, "
        f"{args.threads} torch thread(s); the sides interleaved in chunks of {args.chunk} steps; medians of the "
        f"{sides['ours'].measured} steps of epochs 2-{args.epochs} (caches full) per side, the first epoch's "
        f"{epoch_steps} steps apart (distillation weight {ours.args.distill_loss_weight:g})"
    )
    print(run.load_line())
    print(f"  {'side':<18} {'wall/step':>10} {'CPU/step':>10} {'rows/s':>8} {'rows/CPU-s':>11} {'fetch+collate':>14}")
    for side, stats in sides.items():
        wall, cpu = stats.median("wall"), stats.median("cpu")
        print(
            f"  {NAMES[side]:<18} {wall:8.3f} s {cpu:8.3f} s {args.batch / wall:8.1f} {args.batch / cpu:11.1f} "
            f"{stats.median('fetch_wall'):12.3f} s"
        )
    print(f"  ratio ours / TRL   {ratio_line(sides['ours'], sides['trl'], args.chunk)}")
    print(f"  target <= {TARGET}x")
    first = {side: statistics.median(stats.wall[:epoch_steps]) for side, stats in sides.items()}
    print(
        f"  first epoch (caches filling): TRL {first['trl']:.3f} s, ours {first['ours']:.3f} s per step, "
        f"ratio {first['ours'] / first['trl']:.2f}x (wall medians)"
    )
    cache = ours.teacher_cache
    print(
        f"  ours' caches: teacher {cache.misses} rows computed, {cache.hits} read; SAM {ours.sam_cache.misses} "
        f"clips encoded, {ours.sam_cache.hits['memory']} read"
    )

    print("where a step goes (exclusive times per measured step, and shares; data = fetch + collation):")
    print("\n".join(share_table(sides, [FORWARD_BACKWARD, SAM, TEACHER])))
    print(peak_rss_line())


if __name__ == "__main__":
    main()
