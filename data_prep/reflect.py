"""Stage-2 reflective targets: `y_wrong + " Wait, let me reconsider. " + y_correct`, filtered by class.

    aurora-trl data reflect --outputs STAGE1_OUTPUTS --corrected CORRECTED --out stage2.jsonl [--only-wrong]

`--outputs` holds the Stage-1 model's own reasoning per uid (y_wrong), `--corrected` the corrected paths from a
stronger model (y_correct); both in any dump format (`data_prep/dumps.py`). A pair is kept only when the corrected
path names the ground-truth class (the class of the uid), read with the same parser as the GRPO class reward
(`aurora_trl.text.parse_answer_class` and `names_class`). Kept pairs go to `--out` as JSON lines `{uid, y_wrong, y_correct,
reflective}`, the format `aurora-trl data build --stage2` reads; every other uid goes to `<out>.skipped.jsonl`
with its reason.
"""

import json
import sys
from pathlib import Path

from aurora_trl.text import class_from_uid, names_class, parse_answer_class, reflective_path
from data_prep.dumps import DumpError, read_dump


OUTPUT_FIELDS = ("y_wrong", "output", "reasoning", "text")
CORRECTED_FIELDS = ("y_correct", "corrected", "reasoning", "text")


def build_reflective(outputs: dict[str, str], corrected: dict[str, str], only_wrong: bool = False):
    """Pair the texts by uid and filter them; returns (kept records, filtered records with a reason)."""
    kept, filtered = [], []
    for uid in list(outputs) + [u for u in corrected if u not in outputs]:

        def drop(reason, uid=uid):
            filtered.append({"uid": uid, "reason": reason})

        if uid not in corrected:
            drop("no corrected path")
            continue
        if uid not in outputs:
            drop("no Stage-1 output")
            continue
        try:
            truth = class_from_uid(uid)
        except ValueError as err:
            drop(str(err))
            continue
        answer = parse_answer_class(corrected[uid])
        if answer is None:
            drop("corrected path names no class ('The target is <class>.' not found)")
        elif not names_class(answer, truth):
            drop(f"corrected path names {answer!r}, ground truth is {truth!r}")
        elif only_wrong and names_class(parse_answer_class(outputs[uid]), truth):
            drop("Stage-1 output was already right (--only-wrong)")
        else:
            kept.append(
                {
                    "uid": uid,
                    "y_wrong": outputs[uid],
                    "y_correct": corrected[uid],
                    "reflective": reflective_path(outputs[uid], corrected[uid]),
                }
            )
    return kept, filtered


def add_arguments(parser) -> None:
    parser.add_argument("--outputs", required=True, help="the Stage-1 model's reasoning per uid (y_wrong)")
    parser.add_argument("--corrected", required=True, help="corrected reasoning per uid (y_correct)")
    parser.add_argument("--out", required=True, help="JSON-lines Stage-2 dump to write")
    parser.add_argument(
        "--only-wrong",
        action="store_true",
        help="keep only pairs whose Stage-1 output named a wrong class (AURORA does not say)",
    )


def run(args) -> int:
    try:
        outputs = read_dump(args.outputs, OUTPUT_FIELDS, "outputs")
        corrected = read_dump(args.corrected, CORRECTED_FIELDS, "corrected")
    except DumpError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kept, filtered = build_reflective(outputs.texts, corrected.texts, args.only_wrong)
    filtered += [
        {"uid": p["uid"], "reason": f"{p['source']} file, {p['where']}: {p['reason']}"}
        for p in outputs.problems + corrected.problems
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
    skipped_path = out.with_name(out.name + ".skipped.jsonl")
    with open(skipped_path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in filtered)
    print(f"kept {len(kept)}, filtered {len(filtered)} -> {out} (filtered: {skipped_path})")
    reasons = {}
    for record in filtered:
        key = record["reason"].split(",")[0] if "names" in record["reason"] else record["reason"]
        reasons[key] = reasons.get(key, 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>6}  {reason}")
    return 0
