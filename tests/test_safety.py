"""Safe loading: weights only from safetensors or `torch.load(weights_only=True)`, no
checkpoint code unless a recipe asks for it, and no Hub token in any log or file of a run."""

import ast
import json
import logging
import os
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file
from trl import ModelConfig

from aurora_trl.modeling import AuroraForSegmentation
from aurora_trl.modeling.sam import SamSpec, build_sam, load_sam_checkpoint
from aurora_trl.scripts.common import AuroraScriptArguments, prepare_run
from aurora_trl.scripts.launch import read_recipe
from aurora_trl.scripts.sft import main as sft_main
from aurora_trl.trainers.grpo_config import AuroraGRPOConfig
from aurora_trl.trainers.sft_config import AuroraSFTConfig
from tests.helpers import grpo_config, sft_config, use_local_hub


REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "aurora_trl").rglob("*.py")) + sorted((REPO / "data_prep").rglob("*.py"))


# ---------------------------------------------------------------------------------------------- static checks
def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(func: ast.expr) -> str:
    """`torch.load` for `torch.load(...)`, `load` for `load(...)`, "" for anything else."""
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value) or '?'}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_the_static_scan_sees_the_code():
    assert len(SOURCES) > 20 and any(p.name == "sam.py" for p in SOURCES)
    loads = [(p.name, c) for p in SOURCES for c in _calls(p) if _name(c.func) == "torch.load"]
    assert "sam.py" in [name for name, _ in loads]  # the official SAM .pth loader is among the calls checked


def test_every_torch_load_is_weights_only():
    offenders = []
    for path in SOURCES:
        for call in _calls(path):
            if _name(call.func) in ("torch.load", "torch.serialization.load"):
                value = _keyword(call, "weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    offenders.append(f"{path.relative_to(REPO)}:{call.lineno} torch.load without weights_only=True")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch"):
                if any(alias.name == "load" for alias in node.names):  # a bare `load(...)` would escape the scan
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports torch's load by name")
    assert not offenders, offenders


PICKLE_MODULES = ("pickle", "_pickle", "cPickle", "dill", "joblib", "cloudpickle")


def test_no_pickle_loading_and_no_switch_that_turns_safety_off():
    offenders = []
    for path in SOURCES:
        for call in _calls(path):
            name = _name(call.func)
            if name.split(".")[0] in PICKLE_MODULES and name.rsplit(".", 1)[-1] in ("load", "loads", "Unpickler"):
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno} {name}")
            for key, unsafe in (("weights_only", False), ("trust_remote_code", True), ("use_safetensors", False)):
                value = _keyword(call, key)
                if isinstance(value, ast.Constant) and value.value is unsafe:
                    offenders.append(f"{path.relative_to(REPO)}:{call.lineno} {key}={unsafe}")
    assert not offenders, offenders


# ---------------------------------------------------------------------------------------------- pickled code
class RunsCode:
    """Unpickling this calls `exec`, which writes `marker`: what a hostile checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_the_hostile_pickle_really_runs_code(tmp_path):
    """The payload of the tests below is live: an unsafe load runs it (so their "marker absent" means something)."""
    marker = tmp_path / "ran"
    torch.save({"x": RunsCode(marker)}, tmp_path / "evil.pth")
    torch.load(tmp_path / "evil.pth", weights_only=False)  # the unsafe load this test exists to contrast with
    assert marker.read_text() == "pwned"


def test_sam_checkpoint_with_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    sam = build_sam(
        SamSpec(image_size=64, embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=2)
    )
    state = dict(sam.state_dict())
    state["image_encoder.neck.0.weight"] = RunsCode(marker)
    torch.save(state, tmp_path / "sam_vit_b_01ec64.pth")
    with pytest.raises(ValueError, match="is not a plain SAM state dict .* it refers to .*exec"):
        load_sam_checkpoint(sam, str(tmp_path / "sam_vit_b_01ec64.pth"))
    assert not marker.exists()
    # the same file without the payload loads: the refusal is about the code, not the format
    state["image_encoder.neck.0.weight"] = sam.state_dict()["image_encoder.neck.0.weight"]
    torch.save(state, tmp_path / "clean.pth")
    load_sam_checkpoint(sam, str(tmp_path / "clean.pth"))


def test_model_weights_with_pickled_code_are_refused(tiny_aurora_dir, tmp_path):
    """A checkpoint that ships `pytorch_model.bin` instead of safetensors goes through weights-only loading."""
    import shutil

    marker, folder = tmp_path / "ran", tmp_path / "model"
    shutil.copytree(tiny_aurora_dir, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({**state, "hostile": RunsCode(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(Exception, match="Weights only load failed"):
        AuroraForSegmentation.from_pretrained(folder)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- remote code
def _model_with_remote_code(tmp_path: Path) -> tuple[Path, Path]:
    """A model folder whose config asks for its own Python code, which writes a marker when imported."""
    folder, marker = tmp_path / "remote", tmp_path / "imported"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "not-a-known-type", "auto_map": {"AutoConfig": "custom.CustomConfig"}})
    )
    (folder / "custom.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "from transformers import PretrainedConfig\n"
        "class CustomConfig(PretrainedConfig):\n    model_type = 'not-a-known-type'\n"
    )
    return folder, marker


def test_trust_remote_code_defaults_off_everywhere():
    assert AuroraSFTConfig.__dataclass_fields__["trust_remote_code"].default is False
    assert AuroraGRPOConfig.__dataclass_fields__["trust_remote_code"].default is False
    recipes = sorted((REPO / "recipes").rglob("*.yaml"))
    recipes = [r for r in recipes if r.parent.name != "accelerate"]
    assert len(recipes) >= 8
    for recipe in recipes:
        assert read_recipe(recipe)[1].get("trust_remote_code", False) is False, recipe


def test_a_checkpoint_with_its_own_code_is_refused_by_default(synth_dataset, tmp_path):
    folder, marker = _model_with_remote_code(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        prepare_run(
            AuroraScriptArguments(dataset_name=str(synth_dataset)),
            sft_config(tmp_path / "out"),
            ModelConfig(model_name_or_path=str(folder)),
        )
    assert not marker.exists()


@pytest.mark.parametrize("trust", [False, True])
def test_the_recipe_setting_reaches_the_loader(synth_dataset, tmp_path, monkeypatch, trust):
    """`trust_remote_code` of the training config is what transformers is given (explicitly, never None)."""
    seen = []

    class Stop(Exception):
        pass

    def spy(path, *args, **kwargs):
        seen.append(kwargs.get("trust_remote_code", "absent"))
        raise Stop

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    with pytest.raises(Stop):
        prepare_run(
            AuroraScriptArguments(dataset_name=str(synth_dataset)),
            sft_config(tmp_path / "out", trust_remote_code=trust),
            ModelConfig(model_name_or_path="any/model"),
        )
    assert seen == [trust]


# ---------------------------------------------------------------------------------------------- Hub tokens
TOKEN = "hf_fakeSafetyCheck0123456789abcdefghijklmn"


@pytest.mark.parametrize("make", [sft_config, grpo_config])
def test_printing_a_config_masks_the_token(make, tmp_path):
    """TRL's configs are dataclasses, whose generated repr shows every field: `{args!r}` printed the token."""
    args = make(tmp_path, hub_token=TOKEN)
    for text in (str(args), repr(args), repr([args]), f"{args=}"):
        assert TOKEN not in text and "hub_token=<HUB_TOKEN>" in text


def test_a_hub_token_is_never_printed_logged_or_written(
    tiny_aurora_dir, synth_dataset, tmp_path, monkeypatch, caplog, capfd
):
    """A whole tiny run with a token in the environment and in the config, checkpoints pushed to a (local) Hub."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    use_local_hub(monkeypatch, tmp_path / "hub")
    transformers.logging.enable_propagation()  # transformers' loggers do not reach caplog otherwise
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_debug()
    caplog.set_level(logging.DEBUG)
    try:
        args = sft_config(
            tmp_path / "out",
            max_steps=2,
            save_strategy="steps",
            save_steps=1,
            push_to_hub=True,
            hub_model_id="me/aurora-token-check",
            hub_strategy="checkpoint",  # the checkpoint (with training_args.bin) goes to the repo too
            hub_token=TOKEN,
            report_to="tensorboard",
            log_level="debug",
        )
        print(args, repr(args))  # what a user prints to check a config
        sft_main(
            AuroraScriptArguments(dataset_name=str(synth_dataset)),
            args,
            ModelConfig(model_name_or_path=str(tiny_aurora_dir), use_peft=True, lora_r=8, lora_alpha=16),
        )
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.disable_propagation()
    captured = capfd.readouterr()

    assert args.hub_token == TOKEN  # the run itself keeps its token
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"training_args.bin", "trainer_state.json", "README.md", "adapter_model.safetensors"} <= names
    assert any(p.name.startswith("events.out.tfevents") for p in files)
    repo = tmp_path / "hub" / "me" / "aurora-token-check"
    assert (repo / "checkpoints" / "last-checkpoint" / "training_args.bin").is_file() and (
        repo / "README.md"
    ).is_file()
    assert len(caplog.records) > 50 and "Saving model checkpoint" in caplog.text  # the logs were captured
    leaks = [str(p.relative_to(tmp_path)) for p in files if TOKEN.encode() in p.read_bytes()]
    assert not leaks, f"the token is written in {leaks}"
    for where, text in (("stdout", captured.out), ("stderr", captured.err), ("logging", caplog.text)):
        assert TOKEN not in text, f"the token is in {where}"
    saved = torch.load(tmp_path / "out" / "training_args.bin", weights_only=False)  # our own file, just written
    assert saved.hub_token is None and saved.hub_model_id == "me/aurora-token-check"
    assert os.environ["HF_TOKEN"] == TOKEN
