"""The GRPO recipe runs like the supervised ones: in-process, `accelerate launch` on two ranks, resume, Hub push."""

import json
from pathlib import Path

import pytest
from trl import ModelConfig

from aurora_trl.modeling import AuroraForSegmentation
from aurora_trl.scripts.grpo import AuroraGRPOScriptArguments, main
from aurora_trl.scripts.launch import run_any_recipe
from tests.helpers import grpo_config, use_local_hub
from tests.test_sft_recipes import accelerate_launch


RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "grpo.yaml"


def recipe_options(synth_dataset, model_dir, out, steps=2):
    return [
        "--model_name_or_path",
        str(model_dir),
        "--dataset_name",
        str(synth_dataset),
        "--output_dir",
        str(out),
        "--max_steps",
        str(steps),
        "--max_completion_length",
        "8",
        "--logging_steps",
        "1",
    ]


def test_tiny_grpo_recipe_runs_in_process(synth_dataset, tiny_aurora_dir, tmp_path):
    trainer = run_any_recipe(RECIPE, recipe_options(synth_dataset, tiny_aurora_dir, tmp_path / "run"))
    assert [f.__name__ for f in trainer.reward_funcs] == ["format_reward", "class_reward", "iou_reward"]
    assert trainer.args.num_generations == 3 and trainer.args.beta == 0.0
    assert (tmp_path / "run" / "merged" / "model.safetensors").is_file()
    assert "rewards/iou_reward/mean" in trainer.state.log_history[0]


def test_two_cpu_ranks_run_the_grpo_recipe(synth_dataset, tiny_aurora_dir, tmp_path):
    epochs = {}
    for ranks in (1, 2):
        out = tmp_path / f"ranks{ranks}"
        flags = ["--num_processes", "1"] if ranks == 1 else ["--multi_gpu", "--num_processes", "2"]
        options = recipe_options(synth_dataset, tiny_aurora_dir, out) + ["--save_strategy", "no"]
        accelerate_launch(flags, RECIPE, options, tmp_path)
        epochs[ranks] = json.loads((out / "trainer_state.json").read_text())["epoch"]
    # two ranks sample two clips per step where one rank samples one
    assert epochs[2] == pytest.approx(2 * epochs[1], rel=0.1)


def test_grpo_resume_matches_an_uninterrupted_run(synth_dataset, tiny_aurora_dir, tmp_path):
    from transformers import set_seed

    from tests.test_sft_checkpoints import StopAt

    seg = AuroraForSegmentation.from_pretrained(tiny_aurora_dir).config.seg_token_id
    model_args = ModelConfig(model_name_or_path=str(tiny_aurora_dir), use_peft=True, lora_r=8, lora_alpha=16)
    script_args = AuroraGRPOScriptArguments(dataset_name=str(synth_dataset))

    def run(out, resume=None, callbacks=()):
        set_seed(0)  # LoRA initialisation
        args = grpo_config(
            out / "grpo", seg, max_steps=4, save_strategy="steps", save_steps=2, resume_from_checkpoint=resume
        )
        return main(script_args, args, model_args, callbacks=list(callbacks))

    straight = run(tmp_path / "straight")
    run(tmp_path / "cut", callbacks=[StopAt(2)])
    resumed = run(tmp_path / "cut", resume=str(tmp_path / "cut" / "grpo" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    expected = {n: p for n, p in straight.model.named_parameters() if p.requires_grad}
    got = {n: p for n, p in resumed.model.named_parameters() if p.requires_grad}
    differences = {n: (got[n] - expected[n]).abs().max().item() for n in expected}
    assert max(differences.values()) < 1e-5, sorted(differences.items(), key=lambda kv: -kv[1])[:3]


def test_grpo_push_to_hub_sends_the_model_with_its_card(synth_dataset, tiny_aurora_dir, tmp_path, monkeypatch):
    use_local_hub(monkeypatch, tmp_path / "hub")
    seg = AuroraForSegmentation.from_pretrained(tiny_aurora_dir).config.seg_token_id
    args = grpo_config(tmp_path / "grpo", seg, max_steps=1, push_to_hub=True, hub_model_id="me/aurora-tiny-grpo")
    main(
        AuroraGRPOScriptArguments(dataset_name=str(synth_dataset)),
        args,
        ModelConfig(model_name_or_path=str(tiny_aurora_dir), use_peft=True),
    )
    repo = tmp_path / "hub" / "me" / "aurora-tiny-grpo"
    assert not (repo / "adapter_model.safetensors").exists()  # the root is the merged model, not the adapter
    assert "aurora-grpo" in (repo / "README.md").read_text() and any(repo.glob("model*.safetensors"))
    AuroraForSegmentation.from_pretrained(repo)


def test_aurora_trl_train_runs_the_grpo_recipe(synth_dataset, tiny_aurora_dir, tmp_path):
    import shutil
    import sys

    from tests.test_sft_recipes import launch

    script = shutil.which("aurora-trl") or str(Path(sys.executable).parent / "aurora-trl")
    out = tmp_path / "run"
    launch([script, "train", str(RECIPE), *recipe_options(synth_dataset, tiny_aurora_dir, out, steps=1)], tmp_path)
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 1
