"""Resume, Hub push and TensorBoard logging of the supervised stages."""

import pytest
import torch
from datasets import load_from_disk
from transformers import TrainerCallback, set_seed

from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.scripts.common import AuroraScriptArguments
from aurora_trl.scripts.sft import main
from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer
from tests.helpers import sft_config, use_local_hub


def args_for(out, **kwargs):
    values = dict(max_steps=4, save_strategy="steps", save_steps=2, lr_scheduler_type="linear")
    return sft_config(out, **{**values, **kwargs})


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
        return control


def trainer_for(model_dir, data, args, callbacks=()):
    set_seed(0)  # the LoRA matrices are initialised randomly when the adapter is added
    model = apply_training_policy(AuroraForSegmentation.from_pretrained(model_dir), TrainingPolicy())
    return AuroraSFTTrainer(
        model=model,
        args=args,
        train_dataset=load_from_disk(str(data))["train"],
        processing_class=load_processor(model_dir),
        callbacks=list(callbacks),
    )


def trainable_state(trainer):
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def test_resume_matches_an_uninterrupted_run(tiny_aurora_dir, synth_dataset, tmp_path):
    straight = trainer_for(tiny_aurora_dir, synth_dataset, args_for(tmp_path / "straight"))
    straight.train()

    first = trainer_for(tiny_aurora_dir, synth_dataset, args_for(tmp_path / "cut"), callbacks=[StopAt(2)])
    first.train()
    assert first.state.global_step == 2 and (tmp_path / "cut" / "checkpoint-2").is_dir()
    resumed = trainer_for(tiny_aurora_dir, synth_dataset, args_for(tmp_path / "cut"))
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-2"))
    assert resumed.state.global_step == 4

    expected, got = trainable_state(straight), trainable_state(resumed)
    assert expected.keys() == got.keys()
    assert (
        any("lora_" in n for n in got)
        and any("mask_decoder" in n for n in got)
        and any("seg_projector" in n for n in got)
    )
    # LoRA, projector, mask decoder, embeddings: model, optimizer, scheduler and data order all restored
    differences = {n: (got[n] - expected[n]).abs().max().item() for n in expected}
    assert max(differences.values()) < 1e-5, sorted(differences.items(), key=lambda kv: -kv[1])[:5]
    assert resumed.state.log_history[-2]["loss"] == pytest.approx(straight.state.log_history[-2]["loss"], rel=1e-4)


def test_push_to_hub_puts_the_merged_model_at_the_root_and_checkpoints_in_a_folder(
    tiny_aurora_dir, synth_dataset, tmp_path, monkeypatch
):
    """One model per repo: the root loads as it is, equal to the run's merged model; checkpoints go to
    `checkpoints/`; the card's metadata parses with huggingface_hub's own parser and names no local path."""
    from huggingface_hub import ModelCard
    from trl import ModelConfig

    hub = tmp_path / "hub"
    use_local_hub(monkeypatch, hub)
    training_args = args_for(
        tmp_path / "out",
        max_steps=2,
        save_steps=1,
        push_to_hub=True,
        hub_model_id="me/aurora-tiny-sft",
        hub_strategy="all_checkpoints",
    )
    main(
        AuroraScriptArguments(dataset_name=str(synth_dataset)),
        training_args,
        ModelConfig(model_name_or_path=str(tiny_aurora_dir), use_peft=True, lora_r=8, lora_alpha=16),
    )
    repo = hub / "me" / "aurora-tiny-sft"
    assert not (repo / "adapter_model.safetensors").exists() and not (repo / "merged").exists()
    assert sorted(p.name for p in (repo / "checkpoints").iterdir()) == ["checkpoint-1", "checkpoint-2"]
    pushed = AuroraForSegmentation.from_pretrained(repo)
    merged = AuroraForSegmentation.from_pretrained(tmp_path / "out" / "merged")
    for name, tensor in merged.state_dict().items():
        assert torch.equal(pushed.state_dict()[name], tensor), name
    assert pushed.config.seg_token_id == load_processor(repo).tokenizer.convert_tokens_to_ids("[SEG]")

    card = ModelCard.load(repo / "README.md")
    assert card.data.pipeline_tag == "image-segmentation" and card.data.library_name == "transformers"
    assert "aurora-sft" in card.data.tags and all(" " not in t and ":" not in t for t in card.data.tags)
    assert card.data.datasets is None and str(synth_dataset) not in card.content  # a local path is not linked
    assert "# me/aurora-tiny-sft" in card.text and 'from_pretrained("me/aurora-tiny-sft")' in card.text
    assert (
        "| `lr_scheduler_type` | linear |" in card.text
        and "Not evaluated" in card.text
        and "arXiv 2508.02149" in card.text
    )


def test_tensorboard_receives_every_loss_term(tiny_aurora_dir, synth_dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = trainer_for(
        tiny_aurora_dir,
        synth_dataset,
        args_for(
            tmp_path / "tb",
            max_steps=2,
            save_strategy="no",
            report_to="tensorboard",
        ),
    )
    trainer.train()
    events = list((tmp_path / "tb").rglob("events.out.tfevents*"))  # under output_dir/runs/ by default
    assert events
    tags = set()
    for event_file in events:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    for term in ("loss/ce", "loss/bce", "loss/dice", "loss/distill", "mask/iou"):
        assert f"train/{term}" in tags, (term, sorted(tags))
