"""Reasoning errors of the quickstart's models on the synthetic data: which step of an answer goes wrong.

    python bench/bench_reasoning.py QUICKSTART_DIR [QUICKSTART_DIR ...]

Each folder is one quickstart run (`aurora-trl quickstart`, or a `seed{S}` folder of `bench/bench_ablations.py`).
For every model scored there (`eval/*/clips.csv`), on the Seen and Unseen test rows, each answer's final path (after
its last "Wait, let me reconsider") is read against the path the synthetic data would write for the row
(`data_prep.synth.scene_cot`, from `data/synth/scenes.jsonl` and `metadata.csv`):

- **Step 1 right**: the image step lists the clip's objects exactly ("red drum left, blue dog right");
- **cue quoted**: the reference step begins with the expression's key words, as the synthetic path quotes them
  ("first sound", "red object"): right only by reading the prompt;
- **object right**: the reference step settles on the referred object ("the red drum left");
- **class named**: Step 4 names the target's class (`aurora-trl eval`'s check).

"Object right" is the reasoning error Stage 2's reflective paths are meant to lower: a Stage-1 mistake in the
synthetic dumps is the same reasoning landing on another object. Each cell is the mean over the folders ± half
their range.
"""

import argparse
import csv
import json
import re
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aurora_trl.text import final_path, without_answer  # noqa: E402
from data_prep.synth import SceneObject, candidate_expressions, scene_cot  # noqa: E402


SPLITS = ("test_s", "test_u")
CHECKS = ("Step 1 right", "cue quoted", "object right", "class named")
_STEP_RE = re.compile(r"Step (\d) \(\w+\):\s*(.*?)\s*(?=Step \d \(|$)")


def steps(text: str) -> dict[int, str]:
    """`{step number: its text}` of a path's final version (the last of each number)."""
    return {int(number): body for number, body in _STEP_RE.findall(without_answer(final_path(text)))}


def expected_rows(folder: Path) -> dict[str, tuple[str, str, str]]:
    """`{uid: (Step 1, cue, the target's phrase)}` for the referring test rows of a quickstart folder."""
    raw = folder / "data" / "synth"
    with open(raw / "scenes.jsonl", encoding="utf-8") as f:
        scenes = {scene["vid"]: [SceneObject(**o) for o in scene["objects"]] for scene in map(json.loads, f)}
    expected = {}
    with open(raw / "metadata.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["split"] not in SPLITS:
                continue
            objects, target = scenes[row["vid"]], int(row["fid"])
            cue = next(
                c["cue"] for c in candidate_expressions(objects) if c["text"] == row["exp"] and c["target"] == target
            )
            path = steps(scene_cot(objects, cue, target))
            o = objects[target]
            expected[row["uid"]] = (path[1], cue, f"the {o.color} {o.class_name} {o.slot}")
    return expected


def check_answers(clips_csv: Path, expected: dict) -> dict[str, float]:
    """The shares of `CHECKS` over the rows of `clips_csv` that `expected` covers."""
    hits = dict.fromkeys(CHECKS, 0)
    rows = 0
    with open(clips_csv, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["uid"] not in expected:
                continue
            step1, cue, target = expected[row["uid"]]
            answer = steps(row["reasoning"])
            reference = answer.get(3, "")
            rows += 1
            hits["Step 1 right"] += answer.get(1) == step1
            hits["cue quoted"] += reference.startswith(f"{cue},")
            hits["object right"] += target in reference
            hits["class named"] += row["class_ok"] == "1"
    return {check: hit / max(rows, 1) for check, hit in hits.items()} | {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="quickstart folders (one per seed)")
    args = parser.parse_args()
    per_folder = []
    for folder in args.folders:
        expected = expected_rows(folder)
        per_folder.append(
            {d.name: check_answers(d / "clips.csv", expected) for d in sorted((folder / "eval").iterdir())}
        )
    models = [m for m in per_folder[0] if all(m in folder for folder in per_folder)]
    lines = ["| model | rows | " + " | ".join(CHECKS) + " |", "|---" * (len(CHECKS) + 2) + "|"]
    for model in models:
        cells = [str(sum(folder[model]["rows"] for folder in per_folder))]
        for check in CHECKS:
            values = [folder[model][check] for folder in per_folder]
            cells.append(f"{sum(values) / len(values):.2f} ± {(max(values) - min(values)) / 2:.2f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    print(f"Mean ± half-range over {len(per_folder)} folder(s).\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
