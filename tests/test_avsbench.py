"""AVSBench: the synthetic twin in the official layout, and the builder that turns a subset into Ref-AVS's schema
(5 frames, 16 kHz audio, a fixed expression, per-frame `annotated` flags), every row kept or reported."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from aurora_trl.cli import main as cli_main
from aurora_trl.data_row import SAMPLE_RATE, decode_audio, mask_tensor
from aurora_trl.scripts.common import check_prompts
from data_prep.avsbench import DEFAULT_EXPRESSIONS, MS3_CLASS, build_avsbench
from data_prep.synth_avsbench import media_paths, metadata_name, write_synthetic_avsbench


def metadata(root, subset):
    with open(root / metadata_name(subset), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def s4(tmp_path_factory):
    root = tmp_path_factory.mktemp("avs") / "s4"
    write_synthetic_avsbench(root, "s4", clips=10, seed=0, size=48)
    return root, build_avsbench(root, root.parent / "s4-ds", "s4")


def test_s4_rows_have_five_frames_16khz_audio_and_first_frame_annotations_in_training(s4):
    root, report = s4
    dataset = report["dataset"]
    assert {split: len(rows) for split, rows in dataset.items()} == {"train": 6, "val": 2, "test": 2}
    assert all(c["in"] == c["out"] and c["skipped"] == 0 for c in report["splits"].values())
    for split, rows in dataset.items():
        check_prompts(rows, split)  # the 5-frame prompt this version builds
        for row in rows:
            assert len(row["images"]) == len(row["masks"]) == len(row["annotated"]) == 5
            assert row["expression"] == DEFAULT_EXPRESSIONS["s4"] and not row["is_null"]
            wave = decode_audio(row["audio"])  # 16 kHz, the clip's 5 seconds
            assert len(wave) == 5 * SAMPLE_RATE
            masks = mask_tensor(row["masks"])
            expected = [True] + [split != "train"] * 4
            assert row["annotated"] == expected
            assert masks[0].any()  # the sounding object is in the first frame
            assert not masks[1:].any() if split == "train" else masks.any(dim=(1, 2)).all()
    categories = {r["name"]: r["category"] for r in metadata(root, "s4")}
    assert all(row["class_name"] == categories[row["uid"]] for row in dataset["train"])


def test_s4_masks_are_the_sounding_object_only(s4):
    """Only the sounding object is in the mask: the frame holds other (silent) shapes outside it."""
    root, report = s4
    row = report["dataset"]["test"][0]
    frame = np.asarray(row["images"][2].convert("RGB")).astype(int)
    mask = mask_tensor(row["masks"])[2].numpy().astype(bool)
    background = np.median(frame.reshape(-1, 3), axis=0)
    objects = np.abs(frame - background).sum(-1) > 60  # pixels of any shape
    assert (objects & ~mask).sum() > 20  # a silent object outside the mask
    assert (objects & mask).sum() > 0.5 * mask.sum()


def test_ms3_annotates_every_frame_with_the_union_of_the_sounding_objects(tmp_path):
    root = tmp_path / "ms3"
    write_synthetic_avsbench(root, "ms3", clips=6, seed=1, size=48)
    report = build_avsbench(root, tmp_path / "ds", "ms3")
    rows = [row for split in report["dataset"].values() for row in split]
    assert len(rows) == 6
    for row in rows:
        assert row["annotated"] == [True] * 5 and row["class_name"] == MS3_CLASS
        assert row["expression"] == DEFAULT_EXPRESSIONS["ms3"]
        assert mask_tensor(row["masks"]).any(dim=(1, 2)).all()


def damage(root):
    """One damaged clip per reason; returns {name: reason}."""
    rows = metadata(root, "s4")
    by_split = [r for r in rows if r["split"] == "val"] + [r for r in rows if r["split"] == "test"]
    paths = {r["name"]: media_paths("s4", r["split"], r["name"], r["category"]) for r in rows}
    frame_gone, mask_bad, wav_gone, small_mask = by_split[:4]
    (root / paths[frame_gone["name"]][0][3]).unlink()
    (root / paths[mask_bad["name"]][1][1]).write_bytes(b"not a png")
    (root / paths[wav_gone["name"]][2]).unlink()
    Image.new("L", (8, 8)).save(root / paths[small_mask["name"]][1][0])
    pickled = root / "audio_log_mel" / "test" / "x.pkl"  # the log-mel pickles are never opened
    pickled.parent.mkdir(parents=True)
    pickled.write_bytes(b"\x80\x04 never unpickled")
    with open(root / metadata_name("s4"), "a", encoding="utf-8") as f:
        f.write(f"{rows[0]['name']},src,{rows[0]['category']},train\n")  # a duplicate
        f.write("avsX,src,dog,holdout\n")  # an unknown split
    return {
        frame_gone["name"]: "missing frame",
        mask_bad["name"]: "unreadable mask",
        wav_gone["name"]: "missing audio",
        small_mask["name"]: "is 8x8, its frame 48x48",
        rows[0]["name"]: "duplicate name",
        "avsX": "unknown split 'holdout'",
    }


def test_palette_masks_are_read_by_index_even_where_the_palette_draws_black():
    from data_prep.avsbench import sounding_pixels

    indices = np.zeros((4, 6), dtype=np.uint8)
    indices[1, 2], indices[3, 5] = 1, 2
    mask = Image.fromarray(indices, mode="P")
    mask.putpalette([0, 0, 0, 0, 0, 0, 200, 30, 30] + [0] * (256 * 3 - 9))  # index 1 drawn black
    assert sounding_pixels(mask).tolist() == (indices != 0).tolist()
    grey = Image.fromarray((indices != 0).astype(np.uint8) * 255, mode="L")
    assert sounding_pixels(grey).tolist() == (indices != 0).tolist()


def test_every_damaged_row_is_reported_with_its_reason(tmp_path, capsys):
    root = tmp_path / "s4"
    write_synthetic_avsbench(root, "s4", clips=12, seed=2, size=48)
    expected = damage(root)
    assert (
        cli_main(["data", "build-avsbench", "--root", str(root), "--subset", "s4", "--out", str(tmp_path / "o")]) == 0
    )
    skipped = [json.loads(line) for line in (tmp_path / "o" / "skipped.jsonl").read_text().splitlines()]
    reasons = {record["uid"]: record["reason"] for record in skipped}
    assert set(reasons) == set(expected)
    for name, reason in expected.items():
        assert reason in reasons[name], (name, reasons[name])
    report = json.loads((tmp_path / "o" / "build_report.json").read_text())
    total_in = sum(c["in"] for c in report["splits"].values()) + report["skipped_other_splits"]
    total_out = sum(c["out"] for c in report["splits"].values())
    assert total_in == len(metadata(root, "s4")) == total_out + len(skipped)
    assert "rows of unknown splits skipped: 1" in capsys.readouterr().out


def test_expression_option_and_a_missing_metadata_file(tmp_path, capsys):
    root = tmp_path / "s4"
    write_synthetic_avsbench(root, "s4", clips=3, seed=3, size=32)
    report = build_avsbench(root, tmp_path / "o", "s4", expression="What is making the noise?")
    assert set(report["dataset"]["train"]["expression"]) == {"What is making the noise?"}
    assert cli_main(["data", "build-avsbench", "--root", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "s4_meta_data.csv not found" in capsys.readouterr().err


def test_synthetic_audio_is_five_seconds_in_the_wav_layout(tmp_path):
    root = tmp_path / "s4"
    write_synthetic_avsbench(root, "s4", clips=3, seed=4, size=32)
    row = metadata(root, "s4")[0]
    wave, rate = sf.read(root / media_paths("s4", row["split"], row["name"], row["category"])[2])
    assert rate == SAMPLE_RATE and len(wave) == 5 * SAMPLE_RATE


def test_eval_with_the_avsbench_benchmark_writes_its_report(s4, tiny_aurora_dir, tmp_path, capsys):
    import shutil

    root, _ = s4
    model = tmp_path / "model"  # eval leaves its metrics beside the model: a copy, not the shared fixture
    shutil.copytree(tiny_aurora_dir, model)
    out = tmp_path / "eval"
    command = ["eval", "--benchmark", "avsbench", "--model", str(model), "--data", str(root.parent / "s4-ds")]
    assert cli_main([*command, "--out", str(out), "--max-new-tokens", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "avsbench" and metrics["test"]["clips"] == 2
    assert 0.0 <= metrics["test"]["J"] <= 1.0 and 0.0 <= metrics["test"]["F"] <= 1.0
    table = (out / "results.md").read_text()
    assert table.startswith("Protocol: avsbench") and f"| test | {metrics['test']['J']:.4f} |" in table
    assert table in capsys.readouterr().out


def test_the_tiny_avsbench_recipe_fine_tunes_on_the_twin(s4, tiny_aurora_dir, tmp_path):
    """`recipes/tiny/avsbench.yaml` on the built S4 twin: it trains on the first-frame annotations (the mask decoder
    changes) and leaves a merged model."""
    from pathlib import Path

    from aurora_trl.modeling import AuroraForSegmentation
    from aurora_trl.scripts.launch import run_any_recipe

    root, _ = s4
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "avsbench.yaml"
    out = tmp_path / "run"
    options = ["--model_name_or_path", str(tiny_aurora_dir), "--dataset_name", str(root.parent / "s4-ds")]
    options += ["--output_dir", str(out), "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no"]
    trainer = run_any_recipe(recipe, options)
    assert trainer.state.global_step == 2 and trainer.args.sft_target == "direct"
    before = AuroraForSegmentation.from_pretrained(tiny_aurora_dir).state_dict()
    after = AuroraForSegmentation.from_pretrained(out / "merged").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after if "mask_decoder" in k)
