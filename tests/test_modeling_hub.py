"""push_to_hub with the Hub client replaced by a local folder: model card + the whole model, loadable again."""

import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi

from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.hub import model_card
from aurora_trl.stages import BY_KEY


def test_push_to_hub_uploads_card_and_loadable_model(tiny_aurora, tmp_path, monkeypatch):
    model, processor = tiny_aurora
    remote = tmp_path / "remote"
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs.get("private")))

    def upload_folder(self, repo_id, folder_path, **kwargs):
        calls.append(("upload_folder", repo_id, kwargs.get("commit_message")))
        shutil.copytree(folder_path, remote)
        return "commit"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    result = model.push_to_hub(
        "me/aurora-tiny",
        processor=processor,
        stage="grpo",
        base_model="Qwen/Qwen2.5-Omni-7B",
        datasets=["me/ref-avs"],
        metrics={"test_s/J": 0.5123, "test_s/F": 0.61},
        private=True,
    )
    assert result == "commit"
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"] and calls[0][2] is True

    card = (remote / "README.md").read_text()
    assert card.startswith("---\n") and "base_model: Qwen/Qwen2.5-Omni-7B" in card
    assert "me/ref-avs" in card and "Stage 3: GRPO" in card and "| test_s/J | 0.5123 |" in card
    assert "64² px" in card
    reloaded = AuroraForSegmentation.from_pretrained(remote)
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name
    assert load_processor(remote).tokenizer.get_vocab() == processor.tokenizer.get_vocab()


def test_model_card_without_metrics_or_stage(tiny_aurora):
    model, _ = tiny_aurora
    card = model_card(model)
    assert "Not evaluated" in card and "| stage | unknown |" in card


def test_model_card_takes_its_stage_from_the_registry(tiny_aurora):
    model, _ = tiny_aurora
    card = model_card(model, stage="reflect")
    assert f"- {BY_KEY['reflect'].hub_tag}" in card and BY_KEY["reflect"].label in card
    with pytest.raises(ValueError, match="unknown stage 'crst'"):
        model_card(model, stage="crst")


def test_a_push_after_eval_carries_the_benchmark_metrics(tiny_aurora, tmp_path, monkeypatch):
    """The card of a model pushed after `aurora-trl eval` shows J, F and null S of that eval (Ref-AVS protocol)."""
    import json

    from aurora_trl.modeling.hub import benchmark_metrics, push_to_hub

    model, processor = tiny_aurora
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    results = {"protocol": "refavs", "test_s": {"J": 0.5, "F": 0.6, "clips": 4}, "test_n": {"S": 0.1, "clips": 2}}
    (folder / "eval_results.json").write_text(json.dumps(results))
    uploaded = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, *a, **kw: None)
    monkeypatch.setattr(
        HfApi,
        "upload_folder",
        lambda self, folder_path, **kw: uploaded.update(card=(Path(folder_path) / "README.md").read_text()),
    )
    push_to_hub(AuroraForSegmentation.from_pretrained(folder), "me/evaluated", processor=processor)
    assert "| test_s/J | 0.5000 |" in uploaded["card"] and "| test_n/S | 0.1000 |" in uploaded["card"]
    assert benchmark_metrics({**results, "protocol": "aurora"}) == {}  # AURORA's variant is not the benchmark's
