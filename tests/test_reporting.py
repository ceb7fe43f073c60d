"""`report_to`: a missing integration stops a run at its start, and GRPO's completions table reaches every backend."""

import json
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_from_disk

from aurora_trl.reporting import check_report_to, conversation_text
from aurora_trl.scripts.launch import run_any_recipe
from aurora_trl.trainers.grpo_trainer import AuroraGRPOTrainer
from tests.helpers import ROOT, grpo_config, tiny_policy_model


EXTRAS = ["tensorboard", "wandb", "trackio"]


def test_conversation_text_keeps_the_words_and_marks_the_media():
    prompt = [
        {"role": "system", "content": [{"type": "text", "text": "Be helpful.", "image": None}]},
        {
            "role": "user",
            "content": [
                {"type": "audio", "audio": None},
                {"type": "image", "text": None},  # TRL's strip leaves the block, Arrow the None keys
                {"type": "image", "text": None},
                {"type": "text", "text": "Find the dog.", "image": None},
            ],
        },
    ]
    assert conversation_text(prompt) == "<audio> <image>×2 Find the dog."
    assert conversation_text([{"role": "assistant", "content": "It is [SEG]."}]) == "It is [SEG]."
    assert conversation_text("plain") == "plain"
    turns = [{"role": "user", "content": "Where?"}, {"role": "assistant", "content": "Left."}]
    assert conversation_text(turns) == "user: Where?\n\nassistant: Left."


@pytest.mark.parametrize("name", EXTRAS)
def test_a_missing_integration_names_its_extra(monkeypatch, name):
    monkeypatch.setattr(f"transformers.integrations.is_{name}_available", lambda: False)
    with pytest.raises(ImportError, match=rf'report_to {name!r} needs .* pip install "aurora-trl\[{name}\]"'):
        check_report_to([name])
    check_report_to("all")  # transformers then takes only what is installed
    check_report_to("none")
    check_report_to([])


@pytest.mark.parametrize("recipe", ["teacher", "sft", "reflect", "grpo"])
def test_a_real_recipe_without_tensorboard_fails_before_reading_data(monkeypatch, tmp_path, recipe):
    """The real recipes log to TensorBoard: on a core install they stop at once, not after loading the model."""
    monkeypatch.setattr("transformers.integrations.is_tensorboard_available", lambda: False)
    options = ["--dataset_name", str(tmp_path / "no-such-data"), "--output_dir", str(tmp_path / "run")]
    with pytest.raises(ImportError, match=r'pip install "aurora-trl\[tensorboard\]" \(or set report_to: none\)'):
        run_any_recipe(ROOT / "recipes" / f"{recipe}.yaml", options + ["--bf16", "False"])


# ------------------------------------------------------------------------------------- GRPO log_completions
@pytest.fixture
def no_network(monkeypatch):
    """Refuse connections beyond this machine (W&B's client talks to its local service over a socket)."""
    connect = socket.socket.connect

    def local_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access to {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


def use_local_backend(monkeypatch, backend: str, folder: Path) -> None:
    """W&B offline and Trackio without a Space, both writing under `folder`."""
    if backend == "wandb":
        for key in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            monkeypatch.setenv(key, str(folder))
        monkeypatch.setenv("WANDB_MODE", "offline")
        monkeypatch.setenv("WANDB_SILENT", "true")
    elif backend == "trackio":
        import trackio  # noqa: F401  (TRL imports it with its GRPO trainer)

        # Trackio reads TRACKIO_DIR once, at import, and several of its modules copy the paths made from it.
        paths = {"TRACKIO_DIR": folder, "MEDIA_DIR": folder / "media", "ARTIFACTS_DIR": folder / "artifacts"}
        for name, module in list(sys.modules.items()):
            if name == "trackio" or name.startswith("trackio."):
                for attribute, path in paths.items():
                    if hasattr(module, attribute):
                        monkeypatch.setattr(module, attribute, path)
        for key in ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "TRACKIO_BUCKET_ID"):
            monkeypatch.delenv(key, raising=False)


def logged_table(backend: str, folder: Path, out: Path) -> list[dict]:
    """The rows of the last `completions` table the backend received (TensorBoard gets none from TRL: `[]`)."""
    if backend == "wandb":
        tables = sorted(folder.glob("wandb/offline-run-*/files/media/table/completions_*.table.json"))
        assert tables, "no completions table in the offline W&B run"
        table = json.loads(tables[-1].read_text())
        return [dict(zip(table["columns"], row)) for row in table["data"]]
    if backend == "trackio":
        from trackio.sqlite_storage import SQLiteStorage

        (run,) = SQLiteStorage.get_runs("aurora-trl-tests")
        logs = [
            entry["completions"] for entry in SQLiteStorage.get_logs("aurora-trl-tests", run) if "completions" in entry
        ]
        assert logs, "no completions table in the Trackio project"
        return logs[-1]["_value"]
    assert list(out.glob("runs/*/events.out.tfevents.*")), "no TensorBoard event file"
    return []


@pytest.mark.parametrize("backend", EXTRAS)
def test_grpo_log_completions_reach_the_backend(
    tiny_aurora_dir, synth_dataset, tmp_path, monkeypatch, no_network, backend
):
    folder, out = tmp_path / backend, tmp_path / "grpo"
    use_local_backend(monkeypatch, backend, folder)
    model, processor = tiny_policy_model(tiny_aurora_dir)
    args = grpo_config(
        out,
        max_steps=1,
        max_completion_length=8,
        num_generations=2,
        per_device_train_batch_size=2,
        dataloader_num_workers=0,
        log_completions=True,
        report_to=[backend],
        project="aurora-trl-tests",
    )
    trainer = AuroraGRPOTrainer(
        model=model,
        args=args,
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=processor,
    )
    try:
        trainer.train()
    finally:
        if backend == "wandb":
            import wandb

            wandb.finish()
    assert "rewards/iou_reward/mean" in trainer.state.log_history[0]
    # TRL's own copy of the table, whatever the backend
    saved = pd.read_parquet(out / "completions" / "completions_00001.parquet")
    rows = logged_table(backend, folder, out) or saved.to_dict("records")
    assert len(rows) == 2 and {"prompt", "completion", "iou_reward", "advantage"} <= set(rows[0])
    for row in (*rows, *saved.to_dict("records")):
        # the user turn as text, the audio and frames marked where the model saw them
        assert row["prompt"].startswith("<audio> <image>×") and "The reference is:" in row["prompt"], row["prompt"]
        assert isinstance(row["completion"], str)
