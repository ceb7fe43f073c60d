"""The dataset builder on synthetic clips: counts, schema, joins by uid, parallel build, Hub push."""

import csv
import json
import random
import re
from types import SimpleNamespace

import numpy as np
import pytest
from datasets import load_dataset, load_from_disk
from huggingface_hub import CommitOperationAdd, DatasetCard
from PIL import Image

from aurora_trl.cli import main as cli_main
from aurora_trl.text import build_prompt, class_from_uid
from data_prep.build import build_dataset
from data_prep.synth import write_synthetic_refavs


@pytest.fixture(scope="module")
def built(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    report = build_dataset(
        synth_root, out, stage1=synth_root / "stage1_cot.json", stage2=synth_root / "stage2_reflective.jsonl"
    )
    return out, report


def metadata_rows(root):
    with open(root / "metadata.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_row_counts_per_split(synth_root, built):
    out, report = built
    dataset = load_from_disk(str(out))
    expected = {}
    for row in metadata_rows(synth_root):
        expected[row["split"]] = expected.get(row["split"], 0) + 1
    assert {k: len(v) for k, v in dataset.items()} == expected
    for split, counts in report["splits"].items():
        assert counts == {"in": expected[split], "out": expected[split], "skipped": 0}
    assert (out / "skipped.jsonl").read_text() == ""
    assert json.loads((out / "build_report.json").read_text())["splits"] == report["splits"]


def test_examples_hold_frames_audio_masks_and_prompt(synth_root, built):
    dataset = load_from_disk(str(built[0]))
    for split in dataset:
        for example in dataset[split]:
            assert len(example["images"]) == 10 and len(example["masks"]) == 10
            assert example["images"][0].size == example["masks"][0].size == (48, 48)
            values = set(np.unique(np.asarray(example["masks"][3])))
            assert values <= {0, 255}
            assert example["is_null"] == (example["class_name"] == "null") == (values == {0})
            assert example["class_name"] == class_from_uid(example["uid"])
            assert example["audio"][:4] == b"RIFF" and len(example["audio"]) == 44 + 2 * 160000
            assert (
                example["prompt"][1]["content"][-1]["text"]
                == build_prompt(example["expression"])[1]["content"][-1]["text"]
            )
    # the mask of a row is its fid's folder, frame by frame
    example = dataset["train"][0]
    for t in (0, 9):
        path = f"gt_mask/{example['vid']}/fid_{example['fid']}/{t:05d}.png"
        assert np.array_equal(np.asarray(example["masks"][t]) > 0, np.asarray(Image.open(synth_root / path)) > 0)


def test_reasoning_and_reflective_joined_by_uid(synth_root, built):
    dataset = load_from_disk(str(built[0]))
    cot = {r["uid"]: r["reasoning"] for r in json.loads((synth_root / "stage1_cot.json").read_text())}
    reflective = {
        json.loads(x)["uid"]: json.loads(x)["reflective"]
        for x in (synth_root / "stage2_reflective.jsonl").read_text().splitlines()
    }
    n_reasoning = n_reflective = 0
    for split in dataset:
        for uid, reasoning, refl in zip(
            dataset[split]["uid"], dataset[split]["reasoning"], dataset[split]["reflective"]
        ):
            assert reasoning == cot.get(uid, "")
            assert refl == reflective.get(uid, "")
            n_reasoning += bool(reasoning)
            n_reflective += bool(refl)
    assert n_reasoning == len(cot) and n_reflective == len(reflective) > 0


@pytest.mark.parametrize("shape", ["shuffled_list", "mapping", "jsonl"])
def test_every_dump_shape_joins_by_uid(synth_root, built, tmp_path, shape):
    records = json.loads((synth_root / "stage1_cot.json").read_text())
    random.Random(7).shuffle(records)
    dump = tmp_path / "dump"
    if shape == "shuffled_list":
        dump.write_text(json.dumps(records))
    elif shape == "mapping":
        dump.write_text(json.dumps({r["uid"]: r["reasoning"] for r in records}))
    else:
        dump.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = build_dataset(synth_root, tmp_path / "out", stage1=dump)
    reference = load_from_disk(str(built[0]))
    train = report["dataset"]["train"]
    assert dict(zip(train["uid"], train["reasoning"])) == dict(
        zip(reference["train"]["uid"], reference["train"]["reasoning"])
    )


def test_two_workers_build_the_same_rows(synth_root, built, tmp_path):
    report = build_dataset(synth_root, tmp_path / "par", stage1=synth_root / "stage1_cot.json", num_proc=2)
    one = load_from_disk(str(built[0]))
    for split, two in report["dataset"].items():
        by_uid = {x["uid"]: x for x in one[split].select_columns(["uid", "expression", "reasoning", "audio"])}
        assert len(two) == len(by_uid)
        for x in two.select_columns(["uid", "expression", "reasoning", "audio"]):
            assert x == by_uid[x["uid"]]


def test_cli_build_prints_counts(synth_root, tmp_path, capsys):
    assert cli_main(["data", "build", "--refavs-root", str(synth_root), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    total = len(metadata_rows(synth_root))
    assert re.search(rf"^total\s+{total}\s+=\s+{total}\s+\+\s+0$", printed, re.MULTILINE)


def test_push_to_hub_uploads_every_split(synth_root, tmp_path, monkeypatch):
    """`--push-to-hub` goes through datasets' own push; the Hub client is replaced by a local folder."""
    import fsspec.implementations.memory

    uploaded = tmp_path / "hub"

    class LocalHub:
        def __init__(self, *args, **kwargs):
            pass

        def repo_info(self, repo_id, **kwargs):
            return SimpleNamespace(id=repo_id, sha="0" * 40)

        def preupload_lfs_files(self, repo_id, additions, **kwargs):
            # datasets deletes the local shard right after this call, as the real client has uploaded it by then.
            for op in additions:
                self._write(repo_id, op)

        def create_commit(self, repo_id, operations, **kwargs):
            for op in operations:
                if isinstance(op, CommitOperationAdd) and not (uploaded / repo_id / op.path_in_repo).exists():
                    self._write(repo_id, op)
            return SimpleNamespace(commit_url="local", oid="1" * 40, pr_url=None)

        def upload_file(self, path_or_fileobj, path_in_repo, repo_id, **kwargs):
            self._write(repo_id, CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=path_or_fileobj))

        @staticmethod
        def _write(repo_id, op):
            target = uploaded / repo_id / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            data = op.path_or_fileobj
            target.write_bytes(data if isinstance(data, bytes) else open(data, "rb").read())

    monkeypatch.setattr("datasets.dataset_dict.HfApi", LocalHub)
    monkeypatch.setattr("datasets.arrow_dataset.HfApi", LocalHub)
    monkeypatch.setattr("huggingface_hub.HfApi", LocalHub)
    monkeypatch.setattr(
        "datasets.dataset_dict.HfFileSystem", lambda **kw: fsspec.implementations.memory.MemoryFileSystem()
    )
    rc = cli_main(
        [
            "data",
            "build",
            "--refavs-root",
            str(synth_root),
            "--out",
            str(tmp_path / "o"),
            "--push-to-hub",
            "me/refavs-synth",
        ]
    )
    assert rc == 0
    repo = uploaded / "me" / "refavs-synth"
    assert (repo / "README.md").is_file()
    local = load_from_disk(str(tmp_path / "o"))
    pushed = load_dataset("parquet", data_files={s: str(repo / "data" / f"{s}-*.parquet") for s in local})
    for split in local:
        assert sorted(pushed[split]["uid"]) == sorted(local[split]["uid"])
    example = pushed["train"][0]
    assert len(example["images"]) == 10 and example["images"][0].size == (48, 48)

    # The card is the build's own, and its metadata maps the splits: the repo loads as it is, split names included.
    card = DatasetCard.load(repo / "README.md")
    assert card.data.license == "other" and card.data.license_link == "https://github.com/GeWu-Lab/Ref-AVS"
    assert "referring-segmentation" in card.data.tags and "## Rows left out" in card.text
    assert f"--refavs-root {synth_root}" in card.text
    from_repo = load_dataset(str(repo))
    assert {split: len(rows) for split, rows in from_repo.items()} == {
        s: len(local[s]) for s in local if len(local[s])
    }


def test_splits_without_rows_are_written_and_load_empty(tmp_path):
    root = tmp_path / "two"
    write_synthetic_refavs(root, clips=2, seed=0, size=32)  # too few clips for the test splits
    build_dataset(root, tmp_path / "out")
    dataset = load_from_disk(str(tmp_path / "out"))
    assert set(dataset) == {"train", "val", "test_s", "test_u", "test_n"}
    assert len(dataset["train"]) > 0 and len(dataset["test_n"]) == 0
    assert dataset["test_n"].features == dataset["train"].features
