"""The builder against the Ref-AVS benchmark's real metadata.csv (../shared/refavs, never committed).

Skipped when that folder is absent. The media are not available, so a sample of real rows gets synthetic frames,
audio and masks written beside a copy of its metadata.
"""

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datasets import load_from_disk
from PIL import Image

from aurora_trl.text import class_from_uid, media_id_from_uid
from data_prep.build import build_dataset
from data_prep.refavs import read_metadata


REAL = Path(__file__).resolve().parents[2] / "shared" / "refavs" / "metadata.csv"
pytestmark = pytest.mark.skipif(not REAL.is_file(), reason="../shared/refavs/metadata.csv is not here")


def test_real_metadata_every_row_accounted_for():
    rows, skipped = read_metadata(REAL)
    with open(REAL, newline="", encoding="utf-8") as f:
        n_records = sum(1 for _ in csv.DictReader(f))
    assert n_records == 20459 == len(rows) + len(skipped)
    reasons = Counter(s["reason"].split(" (")[0] for s in skipped)
    assert reasons == {
        "expression is a placeholder": 103,  # "NO."
        "unknown split 'TODO'": 25,
        "duplicate uid": 11,
        "expression is an annotation-tool error message": 1,
    }
    assert Counter(r.split for r in rows) == {
        "train": 14016,
        "val": 1342,
        "test_s": 2287,
        "test_u": 1646,
        "test_n": 1028,
    }
    classes = {r.class_name for r in rows}
    assert len(classes) == 52 and {"hair-dryer", "emergency-car", "vacuum-cleaner", "null"} <= classes
    nulls = [r for r in rows if r.is_null]
    assert len(nulls) == 1708
    assert {r.uid.split("-")[0] for r in nulls} == {"null_c", "null_m"}
    assert all(media_id_from_uid(r.uid).endswith(r.vid) for r in nulls)


def _write_media(root: Path, folder: str, fids: set[int], vid: str, rng) -> None:
    frames = root / "media" / folder / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    for t in range(10):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(frames / f"{t}.jpg")
    buf = io.BytesIO()
    sf.write(buf, rng.normal(0, 0.1, 22050 * 10).astype(np.float32), 22050, format="WAV")
    (root / "media" / folder / "audio.wav").write_bytes(buf.getvalue())
    for fid in fids:
        masks = root / "gt_mask" / vid / f"fid_{fid}"
        masks.mkdir(parents=True, exist_ok=True)
        for t in range(10):
            Image.fromarray((rng.random((24, 32)) > 0.7).astype(np.uint8)).save(masks / f"{t:05d}.png")


def test_build_on_a_sample_of_real_rows(tmp_path):
    with open(REAL, newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    pick = lambda cond, n: [r for r in records if cond(r)][:n]  # noqa: E731
    dup = Counter(r["uid"] for r in records)
    sample = (
        pick(lambda r: r["uid"].startswith("null_c"), 3)
        + pick(lambda r: r["uid"].startswith("null_m"), 3)
        + pick(lambda r: "-" in r["uid"].rsplit("_", 2)[1], 4)
        + pick(lambda r: dup[r["uid"]] > 1, 4)
        + pick(lambda r: r["split"] == "TODO", 2)
        + pick(lambda r: r["exp"].startswith("[Error]") or r["exp"] == "NO." or "'" in r["exp"], 4)
        + records[:10]
    )
    root = tmp_path / "refavs"
    root.mkdir()
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["vid", "uid", "split", "fid", "exp"])
        writer.writeheader()
        writer.writerows(sample)
    rng = np.random.default_rng(0)
    by_vid = {}
    for r in sample:
        by_vid.setdefault(r["vid"], set()).add(int(r["fid"]))
    for vid, fids in by_vid.items():
        null_m = [r for r in sample if r["vid"] == vid and r["uid"].startswith("null_m")]
        # null_m clips are stored the official loader's way, everything else under the plain vid
        folder = (
            media_id_from_uid(null_m[0]["uid"])
            if null_m and len(null_m) == sum(r["vid"] == vid for r in sample)
            else vid
        )
        _write_media(root, folder, fids, vid, rng)

    report = build_dataset(root, tmp_path / "out")
    dataset = load_from_disk(str(tmp_path / "out"))
    total_in = sum(c["in"] for c in report["splits"].values())
    assert total_in == len(sample) == sum(len(v) for v in dataset.values()) + len(report["skipped"])
    assert all(c["in"] == c["out"] + c["skipped"] for c in report["splits"].values())
    kept = {
        u: (c, e)
        for split in dataset.values()
        for u, c, e in zip(split["uid"], split["class_name"], split["expression"])
    }
    for r in sample:
        if r["uid"] in kept:
            assert kept[r["uid"]][0] == class_from_uid(r["uid"])
    assert {"hair-dryer", "null"} & {c for c, _ in kept.values()}
    assert any("'" in e for _, e in kept.values())  # quoted CSV text survives
    # all 6 null rows are built, from both folder conventions, with empty masks at the frame size
    assert any(p.name.startswith("null_m-") for p in (root / "media").iterdir())
    assert len(dataset["test_n"]) == 6
    for example in dataset["test_n"]:
        assert example["is_null"] and all(np.asarray(m).max() == 0 for m in example["masks"])
        assert example["images"][0].size == (32, 24)
