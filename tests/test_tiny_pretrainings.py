"""`save_tiny_model` and `aurora-trl tiny` run each pretraining of the tiny model that is asked for: it writes its
report next to the weights and changes its own parts only (SAM's point pretraining: `tests/test_sam_pretrain.py`)."""

import json

import pytest
import torch

from aurora_trl.cli import main as cli_main
from aurora_trl.modeling import AuroraForSegmentation
from aurora_trl.tiny import (
    GROUNDING_REPORT,
    LM_PRETRAINING_REPORT,
    PERCEPTION_REPORT,
    build_tiny_model,
    save_tiny_model,
)


LANGUAGE = "model.language_model.layers.0.self_attn.q_proj.weight"
PROJECTOR = "seg_projector.0.weight"
DECODER = "sam.mask_decoder.output_upscaling.0.weight"
TOWERS = ("model.audio_tower.conv1.weight", "model.visual.patch_embed.proj.weight")
# (save_tiny_model's data argument, the CLI flag, its report and a key of it, parameters it changes, it keeps)
PRETRAININGS = [
    ("lm_pretraining", "--lm-pretraining", LM_PRETRAINING_REPORT, "class_accuracy", [LANGUAGE], [DECODER, *TOWERS]),
    ("perception", "--perception", PERCEPTION_REPORT, "step1_own_clip", [LANGUAGE, *TOWERS], [DECODER, PROJECTOR]),
    ("grounding", "--grounding", GROUNDING_REPORT, "iou_own_answer", [LANGUAGE, PROJECTOR], [DECODER, *TOWERS]),
]


@pytest.mark.parametrize("name, flag, report_file, key, changed, kept", PRETRAININGS, ids=[p[0] for p in PRETRAININGS])
def test_save_tiny_model_and_its_cli_run_the_pretraining_asked_for(
    name, flag, report_file, key, changed, kept, synth_dataset, tmp_path, capsys
):
    out = save_tiny_model(tmp_path / "tiny", **{f"{name}_data": synth_dataset, f"{name}_steps": 2})
    report = json.loads((out / report_file).read_text())
    assert report["rows"] > 0 and report["seconds"] > 0 and key in report and f"before_{key}" in report
    fresh = build_tiny_model(seed=0)[0].state_dict()
    saved = AuroraForSegmentation.from_pretrained(out).state_dict()
    assert [p for p in changed if torch.equal(saved[p], fresh[p])] == []
    assert [p for p in kept if not torch.equal(saved[p], fresh[p])] == []
    assert {p.name for p in out.glob("*.json")} & {r[2] for r in PRETRAININGS} == {report_file}

    argv = ["tiny", "--out", str(tmp_path / "cli"), f"{flag}-data", str(synth_dataset), f"{flag}-steps", "1"]
    assert cli_main(argv) == 0
    assert report_file in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["files"]
