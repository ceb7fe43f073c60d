"""`aurora-trl data build-avsbench`: AVSBench (unreferenced audio-visual segmentation) as a Hugging Face data set.

    aurora-trl data build-avsbench --root DIR --subset s4|ms3 --out DIR [--expression TEXT]

`--root` is the subset's folder in AVSBench's layout (`data_prep/synth_avsbench.py` lists it; `aurora-trl data
synth --layout avsbench-s4` writes a synthetic one). The data set has Ref-AVS's schema (`aurora_trl/data_row.py`),
so every trainer, eval and predict read it as they read Ref-AVS:

- 5 frames a clip, the WAV resampled to 16 kHz mono (the pickled log-mel files are never opened);
- one fixed `expression` asking for the sounding object(s) (`DEFAULT_EXPRESSIONS`, or `--expression`);
- `masks` with one mask per frame and `annotated` saying which are ground truth: S4 training clips annotate their
  first frame only (the others are stored empty and count in no loss or metric), every other clip all five;
- `class_name` the S4 category (MS3 clips: `sounding object`), `is_null` false, no reasoning paths.

Splits `train`, `val`, `test`. Every metadata row is in the data set or in `OUT/skipped.jsonl` with its reason
(unknown split, missing frame, missing or unreadable mask, missing or corrupt audio, duplicate name, ...), and the
command prints rows in = rows out + rows skipped per split.
"""

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, load_from_disk
from PIL import Image, UnidentifiedImageError

from aurora_trl.data_row import FEATURES, AudioError, encode_audio, encode_mask, load_waveform
from aurora_trl.text import build_prompt
from data_prep.synth_avsbench import AVSBENCH_FRAMES, SPLIT_SHARES, SUBSETS, media_paths, metadata_name


SPLITS = tuple(name for name, _ in SPLIT_SHARES)
# The fixed expression of each subset: AVSBench has no referring expression, the object is whatever sounds.
DEFAULT_EXPRESSIONS = {
    "s4": "The object that makes the sound.",
    "ms3": "The objects that make the sound.",
}
MS3_CLASS = "sounding object"


class BadClip(ValueError):
    """A clip that cannot be used; the message is the reason written to skipped.jsonl."""


def read_metadata(root: Path, subset: str) -> list[dict]:
    """The metadata rows: `name`, `split` and (S4) `category`, by the official column positions."""
    path = root / metadata_name(subset)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --root is the {subset.upper()} folder with {path.name}")
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if "split" not in header:
            raise ValueError(f"{path} has no `split` column (columns: {', '.join(header)})")
        split_at = header.index("split")
        return [
            {"name": r[0].strip(), "split": r[split_at].strip(), "category": r[2].strip() if subset == "s4" else ""}
            for r in reader
            if len(r) > split_at
        ]


def sounding_pixels(mask: Image.Image) -> np.ndarray:
    """The pixels a ground-truth mask marks: non-zero grey values (S4's binary masks) or non-zero palette indices
    (MS3's palette masks; read as indices, since a palette may draw an object's index in black)."""
    if mask.mode == "P":
        return np.asarray(mask) != 0
    return np.asarray(mask.convert("L")) > 0


def read_clip(root: Path, subset: str, row: dict) -> dict:
    """The clip's frames (PNG bytes), masks (0/255 PNG bytes, empty where not annotated), annotated flags and
    16 kHz WAV bytes; `BadClip` with the reason when a file is missing or unreadable."""
    images, masks, audio = media_paths(subset, row["split"], row["name"], row["category"])
    frames, size = [], None
    for path in images:
        try:
            data = (root / path).read_bytes()  # read once: checked here, stored as they are
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                size = size or image.size
            frames.append(data)
        except FileNotFoundError:
            raise BadClip(f"missing frame {Path(path).name}") from None
        except (UnidentifiedImageError, OSError) as err:
            raise BadClip(f"unreadable frame {Path(path).name}: {err}") from None
    annotated = [not (subset == "s4" and row["split"] == "train" and t > 0) for t in range(AVSBENCH_FRAMES)]
    mask_bytes = []
    for path, is_annotated in zip(masks, annotated):
        if not is_annotated:
            mask_bytes.append(encode_mask(np.zeros((size[1], size[0]), dtype=bool)))
            continue
        try:
            with Image.open(root / path) as mask:
                array = sounding_pixels(mask)
        except FileNotFoundError:
            raise BadClip(f"missing mask {Path(path).name}") from None
        except (UnidentifiedImageError, OSError) as err:
            raise BadClip(f"unreadable mask {Path(path).name}: {err}") from None
        if array.shape != (size[1], size[0]):
            raise BadClip(
                f"mask {Path(path).name} is {array.shape[1]}x{array.shape[0]}, its frame {size[0]}x{size[1]}"
            )
        mask_bytes.append(encode_mask(array))
    try:
        wave = load_waveform(root / audio)
    except AudioError as err:
        raise BadClip(str(err)) from None
    return {"images": frames, "masks": mask_bytes, "annotated": annotated, "audio": encode_audio(wave)}


def example(row: dict, clip: dict, expression: str) -> dict:
    return {
        "uid": row["name"],
        "vid": row["name"],
        "split": row["split"],
        "fid": 0,
        "class_name": row["category"] or MS3_CLASS,
        "is_null": False,
        "expression": expression,
        "images": [{"bytes": b, "path": None} for b in clip["images"]],
        "audio": clip["audio"],
        "masks": [{"bytes": b, "path": None} for b in clip["masks"]],
        "annotated": clip["annotated"],
        "reasoning": "",
        "reflective": "",
        "prompt": build_prompt(expression, num_frames=len(clip["images"])),
    }


def build_avsbench(root, out, subset: str = "s4", expression: str | None = None) -> dict:
    """Build, save to `out` and return the report (`{"splits": {split: {in, out, skipped}}, "skipped": [...]}`)."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    root, out = Path(root), Path(out)
    expression = expression or DEFAULT_EXPRESSIONS[subset]
    rows, skipped, seen = read_metadata(root, subset), [], set()
    examples = {split: [] for split in SPLITS}
    for row in rows:
        try:
            if row["split"] not in SPLITS:
                raise BadClip(f"unknown split {row['split']!r}")
            if row["name"] in seen:
                raise BadClip("duplicate name")
            seen.add(row["name"])
            examples[row["split"]].append(example(row, read_clip(root, subset, row), expression))
        except BadClip as err:
            skipped.append({"uid": row["name"], "split": row["split"], "reason": str(err)})
    # `from_list` of no rows would write a table without columns; an empty split keeps the schema this way.
    dataset = DatasetDict(
        {
            split: Dataset.from_dict({key: [item[key] for item in items] for key in FEATURES}, features=FEATURES)
            for split, items in examples.items()
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    dataset.save_to_disk(str(out), num_shards={k: 1 for k, v in dataset.items() if len(v) == 0})
    with open(out / "skipped.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record) + "\n" for record in skipped)
    counts = {
        split: {
            "in": sum(r["split"] == split for r in rows),
            "out": len(dataset[split]),
            "skipped": sum(s["split"] == split for s in skipped),
        }
        for split in SPLITS
    }
    other = sum(s["split"] not in SPLITS for s in skipped)
    report = {"subset": subset, "expression": expression, "splits": counts, "skipped_other_splits": other}
    (out / "build_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return {**report, "skipped": skipped, "dataset": load_from_disk(str(out))}


def add_arguments(parser) -> None:
    parser.add_argument("--root", required=True, help="the subset's folder in AVSBench's layout")
    parser.add_argument("--subset", choices=SUBSETS, default="s4", help="s4 (single source) or ms3 (multiple)")
    parser.add_argument("--out", required=True, help="output folder (DatasetDict.save_to_disk + skipped.jsonl)")
    parser.add_argument("--expression", help="the fixed expression of every row (default: the subset's, see docs)")


def run(args) -> int:
    try:
        report = build_avsbench(args.root, args.out, args.subset, args.expression)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{'split':<8} {'in':>7} {'out':>7} {'skipped':>8}")
    for name, c in report["splits"].items():
        print(f"{name:<8} {c['in']:>7} = {c['out']:>5} + {c['skipped']:>7}")
    if report["skipped_other_splits"]:
        print(f"rows of unknown splits skipped: {report['skipped_other_splits']} (see skipped.jsonl)")
    return 0
