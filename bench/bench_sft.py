"""SFT step benchmark: AuroraSFTTrainer against TRL's plain SFTTrainer, and where an AURORA step goes.

    python bench/bench_sft.py [--steps 12] [--batch 2] [--sam-size 128] [--threads 2]

Both trainers run in this process on the same tiny backbone (the AURORA checkpoint loads as a plain Qwen2.5-Omni
thinker for TRL), the same LoRA policy and the same collated batches; the plain one sees only the language-model
inputs. Step times are medians over the steps after two warm-up steps. The split times one batch outside the
Trainer: collation (processor + SAM pre-processing), the LLM forward (TRL's fused head), SAM decoding with the mask
losses, the teacher's forward, and the backward pass.
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


def timed(fn, repeats=5):
    values = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        values.append(time.perf_counter() - start)
    return statistics.median(values), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sam-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import Qwen2_5OmniThinkerForConditionalGeneration
    from trl import SFTConfig, SFTTrainer

    from aurora_trl.modeling import AuroraForSegmentation
    from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy, lora_config, wrap_with_lora
    from aurora_trl.trainers.collator import AuroraCollator
    from aurora_trl.trainers.sft_config import AuroraSFTConfig
    from aurora_trl.trainers.sft_trainer import EXTRA_KEYS, AuroraSFTTrainer

    work = Path(tempfile.mkdtemp(prefix="bench_sft_"))
    train, processor, tiny = tiny_setup(work, args.sam_size)
    common = dict(
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        gradient_checkpointing=False,
        logging_steps=100,
        seed=0,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
    )

    # ---- ours
    model = apply_training_policy(AuroraForSegmentation.from_pretrained(tiny), TrainingPolicy())
    ours_timer = StepTimer()
    ours = AuroraSFTTrainer(
        model=model,
        args=AuroraSFTConfig(output_dir=str(work / "ours"), **common),
        train_dataset=train,
        processing_class=processor,
        callbacks=[ours_timer],
    )
    ours.train()

    # ---- plain TRL on the same backbone and batches (language-model inputs only)
    collate = AuroraCollator(processor, args.sam_size, "reasoning")

    def plain_collate(rows):
        batch = collate(rows)
        return {k: v for k, v in batch.items() if k not in EXTRA_KEYS}

    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny)
    config = lora_config(model.get_base_model())
    config.modules_to_save = None  # the thinker has no projector or SAM; the [SEG] rows train as ours
    plain_timer = StepTimer()
    plain = SFTTrainer(
        model=wrap_with_lora(thinker, config),
        args=SFTConfig(output_dir=str(work / "plain"), **common),
        train_dataset=train,
        processing_class=processor,
        data_collator=plain_collate,
        callbacks=[plain_timer],
    )
    plain.train()

    ours_step = statistics.median(ours_timer.times[2:])
    plain_step = statistics.median(plain_timer.times[2:])
    print(
        f"step time, batch {args.batch}, SAM {args.sam_size} px, {args.threads} threads, median of "
        f"{len(ours_timer.times) - 2} steps"
    )
    print(f"  AuroraSFTTrainer  {ours_step:.3f} s")
    print(f"  TRL SFTTrainer    {plain_step:.3f} s")
    print(f"  ratio             {ours_step / plain_step:.2f}x")

    # ---- split of one AURORA step (outside the Trainer, same batch)
    rows = [train[i] for i in range(args.batch)]
    with_teacher = AuroraCollator(processor, args.sam_size, "reasoning", with_teacher=True)
    t_collate, batch = timed(lambda: with_teacher(rows), repeats=3)
    lm = {k: v for k, v in batch.items() if k not in EXTRA_KEYS}
    base = model.get_base_model()
    captured = {}
    hook = base.get_backbone().register_forward_hook(lambda m, a, o: captured.__setitem__("h", o.last_hidden_state))

    def llm_forward():
        return -model(**lm, fused_lm_head=True).log_probs.sum() / (lm["labels"] != -100).sum()

    def sam_part():
        seg, _ = base.seg_embeddings(captured["h"], lm["input_ids"], lm["attention_mask"])
        masks = base.predict_masks(
            seg,
            pixel_values=batch["sam_pixel_values"],
            clip_index=torch.arange(len(rows)),
            input_sizes=batch["sam_input_sizes"],
            original_sizes=batch["sam_original_sizes"],
        )
        return sum(
            torch.nn.functional.binary_cross_entropy_with_logits(m, g) for m, g in zip(masks, batch["gt_masks"])
        )

    def teacher_forward():
        with torch.no_grad(), model.disable_adapter():
            ids, mask = batch["teacher_input_ids"], batch["teacher_attention_mask"]
            multimodal = {
                k: lm[k] for k in ("pixel_values", "image_grid_thw", "input_features", "feature_attention_mask")
            }
            return base.get_backbone()(input_ids=ids, attention_mask=mask, **multimodal).last_hidden_state

    def backward():
        loss = llm_forward() + sam_part()
        start = time.perf_counter()
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    t_llm, _ = timed(llm_forward)
    t_sam, _ = timed(sam_part)
    t_teacher, _ = timed(teacher_forward)
    t_backward = statistics.median(backward() for _ in range(5))
    hook.remove()
    total = t_collate + t_llm + t_sam + t_teacher + t_backward
    print(f"split of one step (batch {args.batch}), medians:")
    for name, value in (
        ("collation (processor, SAM frames)", t_collate),
        ("LLM forward (fused head)", t_llm),
        ("SAM decoding + mask loss", t_sam),
        ("teacher forward", t_teacher),
        ("backward (LLM + SAM)", t_backward),
    ):
        print(f"  {name:<36} {value:.3f} s  {100 * value / total:5.1f} %")


if __name__ == "__main__":
    main()
