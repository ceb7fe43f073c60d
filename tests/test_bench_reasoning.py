"""`bench/bench_reasoning.py` reads which step of an answer goes wrong: a right path passes every check, a path that
reconsiders onto another object fails only "object right"."""

import csv
import importlib.util
import json
from pathlib import Path

from aurora_trl.text import REFLECT_TRIGGER, sft_target
from data_prep.synth import SceneObject, candidate_expressions, scene_cot, write_synthetic_refavs


BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_reasoning.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_reasoning", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_answers(path: Path, answers: dict[str, str]) -> None:
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["uid", "class_ok", "reasoning"])
        writer.writeheader()
        writer.writerows({"uid": uid, "class_ok": 1, "reasoning": text} for uid, text in answers.items())


def test_a_right_path_passes_and_a_reconsidered_wrong_object_fails_only_the_object(tmp_path):
    bench = load_bench()
    raw = tmp_path / "data" / "synth"
    write_synthetic_refavs(raw, clips=20, seed=0, size=32)
    lines = (raw / "scenes.jsonl").read_text(encoding="utf-8").splitlines()
    scenes = {s["vid"]: [SceneObject(**o) for o in s["objects"]] for s in map(json.loads, lines)}
    right, reconsidered = {}, {}
    with open(raw / "metadata.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["split"] not in ("test_s", "test_u"):
                continue
            objects, target = scenes[row["vid"]], int(row["fid"])
            cue = next(c["cue"] for c in candidate_expressions(objects) if c["text"] == row["exp"])
            path = scene_cot(objects, cue, target)
            right[row["uid"]] = sft_target(path)
            wrong = scene_cot(objects, cue, (target + 1) % len(objects))
            reconsidered[row["uid"]] = sft_target(path + REFLECT_TRIGGER + wrong)
    write_answers(tmp_path / "eval" / "right" / "clips.csv", right)
    write_answers(tmp_path / "eval" / "reconsidered" / "clips.csv", reconsidered)

    expected = bench.expected_rows(tmp_path)
    assert set(expected) == set(right) and len(right) >= 6
    assert bench.check_answers(tmp_path / "eval" / "right" / "clips.csv", expected) == {
        **dict.fromkeys(bench.CHECKS, 1.0),
        "rows": len(right),
    }
    # the final path (after the trigger) is read: right image step and cue, another object
    shares = bench.check_answers(tmp_path / "eval" / "reconsidered" / "clips.csv", expected)
    assert shares["Step 1 right"] == shares["cue quoted"] == 1.0 and shares["object right"] == 0.0
