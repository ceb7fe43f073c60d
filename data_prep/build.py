"""Build a Hugging Face `DatasetDict` (train, val, test_s, test_u, test_n) from a Ref-AVS folder and the dumps.

    aurora-trl data build --refavs-root DIR [--stage1 FILE] [--stage2 FILE] --out DIR [--num-proc N] [--strict]
                          [--push-to-hub REPO]

Every metadata row ends up in the data set or in `OUT/skipped.jsonl` with its reason; the command prints, per
split, rows in = rows out + rows skipped, and writes the same figures to `OUT/build_report.json`. Dump records
that cannot be used (uid absent from the metadata, empty text, duplicates, non-UTF-8) are reported in
`skipped.jsonl` too, with their `source`. Rows stream through `Dataset.from_generator` in small writer batches,
so peak memory does not grow with the number of clips.
"""

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict, load_from_disk
from tqdm.auto import tqdm

from aurora_trl.data_row import FEATURES
from aurora_trl.text import build_prompt
from data_prep.card import dataset_card, skip_reasons
from data_prep.dumps import STAGE1_FIELDS, STAGE2_FIELDS, Dump, DumpError, read_dump
from data_prep.refavs import SPLITS, BadRow, ClipReader, MetadataError, Row, read_metadata


# A row holds 10 frames, 10 masks and 10 s of audio (about 1 MB for real Ref-AVS clips): write often.
WRITER_BATCH_SIZE = 16


@dataclass
class Shard:
    """One worker's share of a split: its rows and the file where it records the rows it had to skip."""

    root: str
    rows: list[Row]
    reasoning: dict[str, str]
    reflective: dict[str, str]
    skip_file: str
    num_frames: int
    position: int


def generate_examples(shards: list[Shard]):
    """Yield the examples of some shards; rows whose assets fail a check go to the shard's skip file instead."""
    for shard in shards:
        reader = ClipReader(Path(shard.root), shard.num_frames)
        with open(shard.skip_file, "a", encoding="utf-8") as skips:
            for row in tqdm(
                shard.rows,
                desc=f"{shard.rows[0].split} clips, worker {shard.position}",
                position=shard.position,
                mininterval=1.0,
            ):
                try:
                    assets = reader.row_assets(row)
                except BadRow as err:
                    skips.write(
                        json.dumps({"uid": row.uid, "split": row.split, "line": row.line, "reason": str(err)}) + "\n"
                    )
                    continue
                yield example_from_row(
                    row, assets, shard.reasoning.get(row.uid, ""), shard.reflective.get(row.uid, "")
                )


def example_from_row(row: Row, assets: dict, reasoning: str, reflective: str) -> dict:
    return {
        "uid": row.uid,
        "vid": row.vid,
        "split": row.split,
        "fid": row.fid,
        "class_name": row.class_name,
        "is_null": row.is_null,
        "expression": row.expression,
        "images": [{"bytes": b, "path": None} for b in assets["images"]],
        "audio": assets["audio"],
        "masks": [{"bytes": b, "path": None} for b in assets["masks"]],
        "annotated": [True] * len(assets["masks"]),  # Ref-AVS annotates every frame
        "reasoning": reasoning,
        "reflective": reflective,
        "prompt": build_prompt(row.expression, num_frames=len(assets["images"])),
    }


def build_dataset(refavs_root, out, stage1=None, stage2=None, num_proc: int = 1, num_frames: int = 10) -> dict:
    """Build, save to `out` and return the report ({"splits": {split: {in, out, skipped}}, "dump_problems": n}).

    Raises `MetadataError` for an unusable metadata file and `DumpError` for an unreadable dump.
    """
    root, out = Path(refavs_root), Path(out)
    rows, metadata_skips = read_metadata(root / "metadata.csv")
    known_uids = {r.uid for r in rows} | {s["uid"] for s in metadata_skips}
    dumps = {
        name: _read_dump_against(path, fields, name, known_uids)
        for name, path, fields in (("stage1", stage1, STAGE1_FIELDS), ("stage2", stage2, STAGE2_FIELDS))
    }
    dump_problems = [p for d in dumps.values() for p in d.problems]

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        splits, asset_skips = {}, []
        for split in SPLITS:
            split_rows = [r for r in rows if r.split == split]
            splits[split] = _build_split(root, split, split_rows, dumps, work, num_proc, num_frames)
            asset_skips += _read_skips(work / split)
        dataset = DatasetDict(splits)
        # An empty split writes no data file unless asked for one shard, and would then fail to load.
        dataset.save_to_disk(str(out), num_shards={k: 1 for k, v in dataset.items() if len(v) == 0})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    dataset = load_from_disk(str(out))  # backed by the saved files, not the removed build cache

    skipped = metadata_skips + asset_skips
    report = {
        "splits": _count(rows, metadata_skips, asset_skips, dataset),
        "dump_problems": len(dump_problems),
        "with_reasoning": {k: sum(bool(x) for x in v["reasoning"]) for k, v in dataset.items()},
        "with_reflective": {k: sum(bool(x) for x in v["reflective"]) for k, v in dataset.items()},
    }
    with open(out / "skipped.jsonl", "w", encoding="utf-8") as f:
        for record in skipped:
            f.write(json.dumps({"source": "metadata", **record}, ensure_ascii=False) + "\n")
        for record in dump_problems:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out / "build_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    report["skipped"] = skipped
    report["dump_problem_records"] = dump_problems
    command = build_command(refavs_root, out, stage1, stage2, num_frames)
    (out / "README.md").write_text(dataset_card(report, command), encoding="utf-8")
    report["dataset"] = dataset
    return report


def build_command(refavs_root, out, stage1=None, stage2=None, num_frames: int = 10) -> str:
    """The `aurora-trl data build` command line that makes this data set (for its card)."""
    parts = ["aurora-trl data build", f"--refavs-root {refavs_root}", f"--out {out}"]
    parts += [f"--{name} {path}" for name, path in (("stage1", stage1), ("stage2", stage2)) if path]
    if num_frames != 10:
        parts.append(f"--num-frames {num_frames}")
    return " ".join(parts)


def _read_dump_against(path, fields, source: str, known_uids: set[str]) -> Dump:
    if path is None:
        return Dump()
    dump = read_dump(path, fields, source)
    for uid in [u for u in dump.texts if u not in known_uids]:
        del dump.texts[uid]
        dump.problems.append({"source": source, "uid": uid, "where": None, "reason": "uid not in metadata"})
    return dump


def _build_split(root: Path, split: str, rows: list[Row], dumps: dict, work: Path, num_proc: int, num_frames: int):
    (work / split).mkdir()
    if not rows:
        return Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES, split=split)
    # Whole clips per worker, rows of a clip together: each worker decodes a clip's frames and audio once.
    clips = {}
    for row in rows:
        clips.setdefault(row.vid, []).append(row)
    workers = max(1, min(num_proc, len(clips)))
    shard_rows = [[r for vid in list(clips)[i::workers] for r in clips[vid]] for i in range(workers)]
    shards = [
        Shard(
            str(root),
            part,
            _subset(dumps["stage1"], part),
            _subset(dumps["stage2"], part),
            str(work / split / f"skips-{i}.jsonl"),
            num_frames,
            i,
        )
        for i, part in enumerate(shard_rows)
    ]
    # The workers' own bars (with totals) replace datasets' open-ended "Generating split" counter.
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        return Dataset.from_generator(
            generate_examples,
            features=FEATURES,
            gen_kwargs={"shards": shards},
            num_proc=workers if workers > 1 else None,
            cache_dir=str(work / "cache"),
            writer_batch_size=WRITER_BATCH_SIZE,
            split=split,
        )
    except ValueError:
        # datasets refuses to build a split from a generator that yielded nothing; that is fine when every row
        # was skipped (and recorded), and a real error otherwise.
        if len(_read_skips(work / split)) != len(rows):
            raise
        return Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES, split=split)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _subset(dump: Dump, rows: list[Row]) -> dict[str, str]:
    return {r.uid: dump.texts[r.uid] for r in rows if r.uid in dump.texts}


def _read_skips(folder: Path) -> list[dict]:
    records = []
    for file in sorted(folder.glob("skips-*.jsonl")):
        records += [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]
    return records


def _count(rows: list[Row], metadata_skips: list[dict], asset_skips: list[dict], dataset: DatasetDict) -> dict:
    """Per split: metadata records in, examples out, rows skipped. `in` is counted from the input alone, so
    `in == out + skipped` checks that no row was lost on the way."""
    names = list(SPLITS) + sorted({s["split"] for s in metadata_skips} - set(SPLITS))
    counts = {}
    for name in names:
        n_in = sum(r.split == name for r in rows) + sum(s["split"] == name for s in metadata_skips)
        n_skipped = sum(s["split"] == name for s in metadata_skips + asset_skips)
        counts[name] = {"in": n_in, "out": len(dataset[name]) if name in dataset else 0, "skipped": n_skipped}
    return counts


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(parser) -> None:
    parser.add_argument("--refavs-root", required=True, help="Ref-AVS folder with metadata.csv, media/ and gt_mask/")
    parser.add_argument("--stage1", help="Stage-1 CoT dump (JSON list, uid->text mapping, or JSON lines)")
    parser.add_argument("--stage2", help="Stage-2 reflective dump (same formats; see `aurora-trl data reflect`)")
    parser.add_argument("--out", required=True, help="output folder (DatasetDict.save_to_disk + skipped.jsonl)")
    parser.add_argument("--num-proc", type=int, default=1, help="worker processes per split")
    parser.add_argument("--num-frames", type=int, default=10, help="frames (and masks) per clip")
    parser.add_argument("--strict", action="store_true", help="exit non-zero if any row or dump record is skipped")
    parser.add_argument("--push-to-hub", metavar="REPO", help="also push the DatasetDict to this Hub dataset repo")
    parser.add_argument("--private", action="store_true", help="make the pushed Hub repo private")


def run(args) -> int:
    try:
        report = build_dataset(args.refavs_root, args.out, args.stage1, args.stage2, args.num_proc, args.num_frames)
    except (MetadataError, DumpError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_report(report)
    problems = report["skipped"] + report["dump_problem_records"]
    if args.push_to_hub:
        command = build_command(args.refavs_root, args.out, args.stage1, args.stage2, args.num_frames)
        push_with_card(report, command, args.push_to_hub, args.private)
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}")
    if args.strict and problems:
        print(f"error (--strict): {len(problems)} skipped row(s) or dump record(s):", file=sys.stderr)
        for record in problems[:50]:
            print(f"  {record.get('uid')}: {record['reason']}", file=sys.stderr)
        if len(problems) > 50:
            print(f"  ... and {len(problems) - 50} more in {Path(args.out) / 'skipped.jsonl'}", file=sys.stderr)
        return 1
    return 0


def push_with_card(report: dict, command: str, repo_id: str, private: bool = False) -> None:
    """Push the built data set with `datasets`, then replace the generic card it writes with this build's own."""
    from huggingface_hub import HfApi

    dataset = report["dataset"]
    dataset.push_to_hub(repo_id, private=private or None)
    card = dataset_card(report, command, pushed_splits=[name for name, split in dataset.items() if len(split)])
    HfApi().upload_file(
        path_or_fileobj=card.encode("utf-8"), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset"
    )


def print_report(report: dict) -> None:
    print(f"{'split':<8} {'in':>7} {'out':>7} {'skipped':>8}")
    for name, c in report["splits"].items():
        print(f"{name:<8} {c['in']:>7} = {c['out']:>5} + {c['skipped']:>7}")
    total = {k: sum(c[k] for c in report["splits"].values()) for k in ("in", "out", "skipped")}
    print(f"{'total':<8} {total['in']:>7} = {total['out']:>5} + {total['skipped']:>7}")
    if report["dump_problems"]:
        print(f"dump records not used: {report['dump_problems']} (see skipped.jsonl)")
    for reason, n in skip_reasons(report["skipped"] + report["dump_problem_records"]).most_common():
        print(f"  {n:>6}  {reason}")
