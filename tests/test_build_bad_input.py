"""Bad input never raises and is never lost: each damaged row lands in skipped.jsonl with its reason.

One synthetic folder is damaged in many ways at once (each damage on its own clip) and built once; each test then
checks one kind of damage.
"""

import csv
import json

import pytest
import soundfile as sf
from datasets import load_from_disk
from PIL import Image

from aurora_trl.cli import main as cli_main
from data_prep.synth import write_synthetic_refavs


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


# damage name -> (what is done to one clip's files, expected reason fragment)
MEDIA_DAMAGE = {
    "missing_frame": (lambda media, masks: (media / "frames" / "4.jpg").unlink(), "expected 10 frames"),
    "extra_frame": (
        lambda media, masks: (media / "frames" / "10.jpg").write_bytes((media / "frames" / "0.jpg").read_bytes()),
        "found 11",
    ),
    "truncated_jpeg": (lambda media, masks: _truncate(media / "frames" / "3.jpg"), "corrupt frame 3.jpg"),
    "missing_audio": (lambda media, masks: (media / "audio.wav").unlink(), "missing audio"),
    "corrupt_wav": (
        lambda media, masks: (media / "audio.wav").write_bytes(b"RIFF\x00\x01garbage" * 10),
        "corrupt audio",
    ),
    "missing_masks": (
        lambda media, masks: [p.unlink() for p in masks.glob("*")] and masks.rmdir(),
        "missing mask folder",
    ),
    "corrupt_png": (lambda media, masks: _truncate(masks / "00002.png"), "corrupt mask 00002.png"),
    "missing_mask": (lambda media, masks: (masks / "00007.png").unlink(), "expected 10 masks"),
    "mask_size": (lambda media, masks: Image.new("L", (20, 20)).save(masks / "00001.png"), "mask 00001.png is 20x20"),
    "missing_media": (lambda media, masks: __import__("shutil").rmtree(media), "missing media folder"),
}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged") / "refavs"
    write_synthetic_refavs(root, clips=24, seed=1, size=32)
    with open(root / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # one non-null row per clip, so that damaging a clip's files hits a known set of rows
    first_rows = {}
    for row in rows:
        if "_null_" not in row["uid"]:
            first_rows.setdefault(row["vid"], row)
    targets = list(first_rows.values())
    expected = {}
    for (name, (damage, reason)), row in zip(MEDIA_DAMAGE.items(), targets):
        damage(root / "media" / row["vid"], root / "gt_mask" / row["vid"] / f"fid_{row['fid']}")
        per_media = name in (
            "missing_frame",
            "extra_frame",
            "truncated_jpeg",
            "missing_audio",
            "corrupt_wav",
            "missing_media",
        )
        hit = [
            r["uid"]
            for r in rows
            if r["vid"] == row["vid"] and (per_media or (r["fid"] == row["fid"] and "_null_" not in r["uid"]))
        ]
        expected[name] = (hit, reason)

    spare = targets[len(MEDIA_DAMAGE)]
    # metadata-level damage, appended as raw bytes
    with open(root / "metadata.csv", "ab") as f:
        f.write(f"{spare['vid']},{spare['uid']},{spare['split']},{spare['fid']},Another expression.\n".encode())
        f.write(f"{spare['vid']},{spare['vid']}_guitar_9,train,0,The caf\xe9 object.\n".encode("latin-1"))
        f.write(f"{spare['vid']},{spare['vid']}_guitar_8,TODO,0,The object.\n".encode())
        f.write(f"{spare['vid']},{spare['vid']}_guitar_7,train,0,[Error] \u9519\u8bef\n".encode())
        f.write(f"{spare['vid']},{spare['vid']}_guitar_6,train,zero,The object.\n".encode())
    expected["duplicate_uid"] = ([spare["uid"]], "duplicate uid (first kept")
    expected["non_utf8"] = ([f"{spare['vid']}_guitar_9"], "non-UTF-8 text")
    expected["unknown_split"] = ([f"{spare['vid']}_guitar_8"], "unknown split 'TODO'")
    expected["error_text"] = ([f"{spare['vid']}_guitar_7"], "annotation-tool error message")
    expected["bad_fid"] = ([f"{spare['vid']}_guitar_6"], "is not an integer")

    # dump-level damage
    cot = json.loads((root / "stage1_cot.json").read_text())
    cot.append({"uid": "nobody_0_10000_cat_1", "reasoning": "Step 4 (answer): The target is cat."})
    cot[0]["reasoning"] = "   "
    empty_uid = cot[0]["uid"]
    raw = json.dumps(cot).encode()
    # a dump record whose text holds a byte that is not UTF-8
    raw = raw.replace(b'"reasoning": "Step 1', b'"reasoning": "\xff Step 1', 1)
    (root / "stage1_bad.json").write_bytes(raw)

    out = tmp_path_factory.mktemp("damaged_out")
    rc = cli_main(
        ["data", "build", "--refavs-root", str(root), "--out", str(out), "--stage1", str(root / "stage1_bad.json")]
    )
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    return {
        "root": root,
        "out": out,
        "rc": rc,
        "rows": rows,
        "skipped": skipped,
        "expected": expected,
        "empty_uid": empty_uid,
    }


@pytest.mark.parametrize(
    "case", list(MEDIA_DAMAGE) + ["duplicate_uid", "non_utf8", "unknown_split", "error_text", "bad_fid"]
)
def test_damaged_row_is_skipped_with_its_reason(damaged, case):
    uids, reason = damaged["expected"][case]
    assert uids
    dataset = load_from_disk(str(damaged["out"]))
    kept = {u for split in dataset.values() for u in split["uid"]}
    for uid in uids:
        records = [s for s in damaged["skipped"] if s["uid"] == uid and s["source"] == "metadata"]
        assert records, f"{uid} not reported"
        assert any(reason in r["reason"] for r in records), records
        if case != "duplicate_uid":  # the first copy of a duplicated uid is kept
            assert uid not in kept


def test_nothing_lost_and_no_error_exit(damaged):
    assert damaged["rc"] == 0
    report = json.loads((damaged["out"] / "build_report.json").read_text())
    dataset = load_from_disk(str(damaged["out"]))
    with open(damaged["root"] / "metadata.csv", newline="", encoding="utf-8", errors="replace") as f:
        n_records = sum(1 for _ in csv.DictReader(f))
    total_in = sum(c["in"] for c in report["splits"].values())
    total_out = sum(len(v) for v in dataset.values())
    n_metadata_skips = sum(s["source"] == "metadata" for s in damaged["skipped"])
    assert total_in == n_records == total_out + n_metadata_skips
    for counts in report["splits"].values():
        assert counts["in"] == counts["out"] + counts["skipped"]


def test_dump_problems_are_reported(damaged):
    dump = [s for s in damaged["skipped"] if s["source"] == "stage1"]
    reasons = {(s["uid"], s["reason"]) for s in dump}
    assert ("nobody_0_10000_cat_1", "uid not in metadata") in reasons
    assert (damaged["empty_uid"], "empty text") in reasons
    assert any(r == "non-UTF-8 text" for _, r in reasons)
    # a row whose dump record was unusable is kept, without reasoning
    dataset = load_from_disk(str(damaged["out"]))
    reasoning = {u: r for split in dataset.values() for u, r in zip(split["uid"], split["reasoning"])}
    assert reasoning.get(damaged["empty_uid"], "") == ""


def test_strict_exits_non_zero_listing_the_skips(damaged, tmp_path, capsys):
    rc = cli_main(["data", "build", "--refavs-root", str(damaged["root"]), "--out", str(tmp_path / "o"), "--strict"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "--strict" in err and "missing audio" in err and "Traceback" not in err


def test_missing_column_fails_with_its_name(tmp_path, capsys):
    root = tmp_path / "refavs"
    root.mkdir()
    (root / "metadata.csv").write_text("vid,uid,split,exp\nv,v_cat_1,train,The cat.\n")
    rc = cli_main(["data", "build", "--refavs-root", str(root), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "missing column(s) fid" in err and "Traceback" not in err


def test_resampled_stereo_audio_is_normalised(tmp_path):
    """A 44.1 kHz stereo file (Ref-AVS null clips come in other formats) becomes 16 kHz mono."""
    import numpy as np

    from data_prep.refavs import read_audio

    wave = np.stack([np.sin(np.linspace(0, 2000, 44100 * 2))] * 2, axis=1).astype(np.float32) * 0.5
    sf.write(tmp_path / "a.wav", wave, 44100)
    out, rate = sf.read(__import__("io").BytesIO(read_audio(tmp_path / "a.wav")))
    assert rate == 16000 and out.ndim == 1 and len(out) == 32000


def test_the_card_beside_the_data_counts_the_left_out_rows_by_reason(damaged):
    """`OUT/README.md` is the data set card: metadata huggingface_hub's own parser reads, the split sizes, every
    left-out row counted under its reason, the schema and the build command."""
    from huggingface_hub import DatasetCard

    from aurora_trl.data_row import FEATURES
    from data_prep.card import skip_reasons

    card = DatasetCard.load(damaged["out"] / "README.md")
    assert card.data.license == "other" and card.data.task_categories == ["image-segmentation"]
    assert all(" " not in tag and ":" not in tag for tag in card.data.tags)
    report = json.loads((damaged["out"] / "build_report.json").read_text())
    for split, counts in report["splits"].items():
        assert f"| {split} | {counts['in']} | {counts['out']} | {counts['skipped']} |" in card.text
    reasons = skip_reasons(damaged["skipped"])
    assert sum(reasons.values()) == len(damaged["skipped"]) > 0
    for reason, n in reasons.items():
        assert f"| {reason} | {n} |" in card.text
    assert all(f"| `{column}` |" in card.text for column in FEATURES)
    assert f"aurora-trl data build --refavs-root {damaged['root']}" in card.text
