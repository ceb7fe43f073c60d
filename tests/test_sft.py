"""AuroraSFTTrainer on the tiny model and synthetic data: what trains, what is logged, null rows, and learning."""

import math

import pytest
import torch
from datasets import load_from_disk

from aurora_trl.trainers.collator import IGNORE_INDEX, AuroraCollator
from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer
from tests.helpers import sft_config, tiny_policy_model


def test_collator_labels_only_the_response(tiny_aurora_dir, synth_dataset):
    _, processor = tiny_policy_model(tiny_aurora_dir)
    rows = [load_from_disk(str(synth_dataset))["train"][i] for i in range(2)]
    batch = AuroraCollator(processor, 64, "reasoning", with_teacher=True)(rows)
    tokenizer = processor.tokenizer
    for i, row in enumerate(rows):
        labelled = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        assert tokenizer.decode(labelled) == row["reasoning"] + " It is [SEG]." + tokenizer.eos_token
        teacher = batch["teacher_input_ids"][i][batch["teacher_attention_mask"][i].bool()]
        assert tokenizer.decode(teacher).endswith(f"It is {row['class_name']} [SEG].{tokenizer.eos_token}")
    assert batch["gt_masks"][0].shape == (10, 48, 48) and batch["sam_pixel_values"].shape == (2, 10, 3, 64, 64)
    assert batch["input_features"].shape[0] == 2 and batch["image_grid_thw"].shape[0] == 20


def test_real_recipes_collate_in_worker_processes(tiny_aurora_dir, synth_dataset):
    """The real recipes decode and process frames in `dataloader_num_workers` processes (a 720p row costs about 2 s
    of processing): the collator must give there the batch it gives in the main process."""
    from pathlib import Path

    from torch.utils.data import DataLoader

    from aurora_trl.scripts.launch import parse_any_recipe

    recipes = Path(__file__).resolve().parents[1] / "recipes"
    for name in ("teacher", "sft", "reflect", "grpo"):
        _, (_, training_args, _) = parse_any_recipe(recipes / f"{name}.yaml", ["--use_cpu", "True", "--bf16", "False"])
        assert training_args.dataloader_num_workers >= 2, name
    _, processor = tiny_policy_model(tiny_aurora_dir)
    rows = load_from_disk(str(synth_dataset))["train"].select(range(4))
    collator = AuroraCollator(processor, 64, "reasoning")
    in_workers = list(DataLoader(rows, batch_size=2, num_workers=2, collate_fn=collator))
    for batch, expected in zip(in_workers, [collator([rows[0], rows[1]]), collator([rows[2], rows[3]])]):
        for key in ("input_ids", "labels", "pixel_values", "input_features", "sam_pixel_values"):
            assert torch.equal(batch[key], expected[key]), key


def test_sft_step_trains_the_right_parts_and_logs_each_term(tiny_aurora_dir, synth_dataset, tmp_path):
    model, processor = tiny_policy_model(tiny_aurora_dir)
    dataset = load_from_disk(str(synth_dataset))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = AuroraSFTTrainer(
        model=model, args=sft_config(tmp_path / "out"), train_dataset=dataset["train"], processing_class=processor
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    for key in ("loss/ce", "loss/bce", "loss/dice", "loss/distill", "mask/iou"):
        assert math.isfinite(logged[key]), key
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed <= trainable
    changed = {n.replace(".modules_to_save.default.", ".") for n in changed}  # PEFT's trainable copies
    for part in ("lora_A", "seg_projector", "mask_decoder.transformer", "mask_decoder.output_upscaling"):
        assert any(part in n for n in changed), f"{part} did not change"
    for frozen in ("sam.image_encoder", "audio_tower", "visual"):
        assert not any(frozen in n for n in changed), f"{frozen} changed"


def test_null_rows_give_finite_losses(tiny_aurora_dir, synth_dataset, tmp_path):
    model, processor = tiny_policy_model(tiny_aurora_dir)
    dataset = load_from_disk(str(synth_dataset))["test_n"]
    assert all(dataset["is_null"])
    trainer = AuroraSFTTrainer(
        model=model,
        args=sft_config(tmp_path / "out", sft_target="direct", max_steps=1),
        train_dataset=dataset,
        processing_class=processor,
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert all(math.isfinite(logged[k]) for k in ("loss", "loss/bce", "loss/dice", "loss/distill"))


def test_rows_without_reasoning_are_left_out(tiny_aurora_dir, synth_dataset, tmp_path):
    model, processor = tiny_policy_model(tiny_aurora_dir)
    dataset = load_from_disk(str(synth_dataset))
    trainer = AuroraSFTTrainer(
        model=model,
        args=sft_config(tmp_path / "out", sft_target="reflective"),
        train_dataset=dataset["train"],
        processing_class=processor,
    )
    assert (
        0 < len(trainer.train_dataset) == sum(bool(r) for r in dataset["train"]["reflective"]) < len(dataset["train"])
    )
    with pytest.raises(ValueError, match="no row with reasoning"):
        AuroraSFTTrainer(
            model=model, args=sft_config(tmp_path / "out"), train_dataset=dataset["test_s"], processing_class=processor
        )


def test_frozen_work_runs_once_per_row_across_epochs(tiny_aurora_dir, synth_dataset, tmp_path):
    """Two epochs over 4 rows: the teacher's [SEG] embedding of each row and SAM's embeddings of each clip are
    computed in the first epoch only, and the losses are those of a run that recomputes them at every step (the
    caches switched off, as they are when the weights are sharded)."""
    rows = load_from_disk(str(synth_dataset))["train"].select(range(4))
    keys = ("loss", "loss/ce", "loss/bce", "loss/dice", "loss/distill", "mask/iou")

    def run(name, caching):
        torch.manual_seed(0)
        model, processor = tiny_policy_model(tiny_aurora_dir)
        args = sft_config(tmp_path / name, max_steps=4, dataloader_num_workers=0)
        trainer = AuroraSFTTrainer(model=model, args=args, train_dataset=rows, processing_class=processor)
        assert trainer.teacher_cache.enabled and trainer.sam_cache.enabled  # one process: caching on
        trainer.teacher_cache.enabled = trainer.sam_cache.enabled = caching
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        trainer.train()
        # the teacher is the policy with PEFT's adapters off, and turning them on again leaves frozen parts frozen
        assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
        return trainer, [[entry[k] for k in keys] for entry in trainer.state.log_history if "loss/ce" in entry]

    cached, cached_logs = run("cached", caching=True)
    assert cached.state.epoch == 2
    assert (cached.teacher_cache.misses, cached.teacher_cache.hits, len(cached.teacher_cache)) == (4, 4, 4)
    clips = len(set(rows["vid"]))
    assert (cached.sam_cache.misses, cached.sam_cache.hits["memory"]) == (clips, 8 - clips)

    recomputed, recomputed_logs = run("recomputed", caching=False)
    assert (recomputed.teacher_cache.hits, len(recomputed.teacher_cache), recomputed.sam_cache.misses) == (0, 0, 0)
    assert len(cached_logs) == 4
    for cached_step, recomputed_step in zip(cached_logs, recomputed_logs):
        assert cached_step == pytest.approx(recomputed_step, abs=1e-6)


def test_teacher_cache_starts_again_when_the_teacher_changes():
    from aurora_trl.trainers.teacher_cache import TeacherCache

    teacher = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    teacher[1].requires_grad_(False)
    cache = TeacherCache()
    assert cache.lookup(teacher, ["a", "b"]) is None
    cache.store(["a", "b"], torch.ones(2, 3))
    assert torch.equal(cache.lookup(teacher, ["b", "a"]), torch.ones(2, 3))
    assert cache.lookup(teacher, ["a", "c"]) is None  # one row missing: the batch runs the teacher
    with torch.no_grad():
        teacher[0].weight.add_(1.0)  # e.g. a checkpoint loaded into the teacher
    assert cache.lookup(teacher, ["a"]) is None and len(cache) == 0
    assert cache.lookup(torch.nn.Linear(2, 2), []) is None  # another teacher

    # the PEFT teacher is the policy with its adapters off: its trainable weights change every step, harmlessly
    policy_teacher = TeacherCache(frozen_only=True)
    policy_teacher.lookup(teacher, ["a"])
    policy_teacher.store(["a"], torch.zeros(1, 3))
    with torch.no_grad():
        teacher[0].weight.add_(1.0)
    assert policy_teacher.lookup(teacher, ["a"]) is not None
    with torch.no_grad():
        teacher[1].weight.add_(1.0)
    assert policy_teacher.lookup(teacher, ["a"]) is None

    off = TeacherCache(enabled=False)  # sharded weights: the teacher runs at every step
    off.store(["a"], torch.ones(1, 3))
    assert off.lookup(teacher, ["a"]) is None and len(off) == 0


def test_collation_runs_in_worker_processes_by_default():
    from aurora_trl.trainers.sft_config import AuroraSFTConfig

    assert AuroraSFTConfig(output_dir="unused", use_cpu=True, bf16=False).dataloader_num_workers == 2
