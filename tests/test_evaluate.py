"""`aurora-trl eval` on the tiny model and synthetic data: every report file, with consistent numbers."""

import csv
import json
import shutil

from aurora_trl.cli import main as cli_main


def test_eval_writes_metrics_table_csv_and_overlays(tiny_aurora_dir, synth_dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    model_dir = tmp_path / "model"  # eval leaves its metrics in the model's folder: a copy, not the shared one
    shutil.copytree(tiny_aurora_dir, model_dir)
    rc = cli_main(
        [
            "eval",
            "--model",
            str(model_dir),
            "--data",
            str(synth_dataset),
            "--out",
            str(out),
            "--max-new-tokens",
            "4",
            "--limit",
            "3",
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "refavs"
    assert json.loads((model_dir / "eval_results.json").read_text()) == metrics  # for the card of a later push
    for split in ("test_s", "test_u", "mix"):
        assert 0.0 <= metrics[split]["J"] <= 1.0 and 0.0 <= metrics[split]["F"] <= 1.0
    assert 0.0 <= metrics["test_n"]["S"] <= 1.0 and metrics["mix"]["clips"] == 6
    table = (out / "results.md").read_text()
    assert "| Seen J | Seen F | Unseen J | Unseen F | Mix J | Mix F | Null S" in table
    assert f"{metrics['test_n']['S']:.4f}" in table and table in capsys.readouterr().out
    with open(out / "clips.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and {r["split"] for r in rows} == {"test_s", "test_u", "test_n"}
    assert all(r["S"] for r in rows if r["split"] == "test_n") and all(
        r["J"] and r["F"] for r in rows if r["split"] != "test_n"
    )
    assert all(r["reasoning"].endswith("It is [SEG].") or "[SEG]" in r["reasoning"] for r in rows)
    # each answer's checks, and their shares in metrics.json
    for key in ("own_seg", "four_steps", "class_ok"):
        assert {r[key] for r in rows} <= {"0", "1"}
        assert metrics["answers"][key] == sum(int(r[key]) for r in rows) / len(rows)
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert any(n.startswith("test_s_best0") for n in overlays) and any(n.startswith("test_n_worst0") for n in overlays)


def test_eval_unknown_split_is_a_clear_error(synth_dataset, tmp_path, capsys):
    rc = cli_main(
        ["eval", "--model", "unused", "--data", str(synth_dataset), "--out", str(tmp_path), "--splits", "test_x"]
    )
    assert rc == 2 and "split(s) test_x not in" in capsys.readouterr().err


def test_generation_batches_do_not_change_the_scores(tiny_aurora, synth_dataset, tmp_path, monkeypatch):
    """`batch_size` clips per `generate`, whatever the protocol's scoring batch of 4: 1, 3 and 8 give the same numbers
    (the scoring batches wait for their clips), and each `generate` sees `batch_size` clips."""
    from datasets import load_from_disk

    from aurora_trl.apps.evaluate import evaluate

    model, processor = tiny_aurora
    dataset = load_from_disk(str(synth_dataset))
    sizes, segment_batch = [], model.segment_batch

    def counted(clips, *args, **kwargs):  # the real method; only the batch sizes are recorded
        sizes.append(len(clips))
        return segment_batch(clips, *args, **kwargs)

    monkeypatch.setattr(model, "segment_batch", counted)
    counts = [min(6, len(dataset[split])) for split in ("test_s", "test_n")]
    results = {}
    for batch_size in (1, 3, 8):
        sizes.clear()
        out = tmp_path / f"b{batch_size}"
        metrics = evaluate(
            model,
            processor,
            dataset,
            ["test_s", "test_n"],
            out,
            max_new_tokens=4,
            limit=6,
            overlays=0,
            batch_size=batch_size,
        )
        expected = [min(batch_size, n - start) for n in counts for start in range(0, n, batch_size)]
        assert sizes == expected, (batch_size, sizes)
        with open(out / "clips.csv", newline="") as f:
            results[batch_size] = (metrics, [(r["uid"], r["J"], r["F"], r["S"]) for r in csv.DictReader(f)])
    for batch_size in (3, 8):
        assert results[batch_size][1] == results[1][1]
        for split in ("test_s", "test_n"):
            assert results[batch_size][0][split]["clips"] == results[1][0][split]["clips"]
            for key, value in results[1][0][split].items():
                assert abs(results[batch_size][0][split][key] - value) < 1e-5, (batch_size, split, key)


def test_inference_generates_as_long_as_auroras():
    """AURORA infers with up to 2,048 new tokens (a 2,000-character CoT is 554 of Qwen2.5-Omni's tokens): eval,
    predict, the demo, `data cot` and `segment()` must not cut answers at 512; they stop at the end of turn."""
    import argparse
    import inspect

    from aurora_trl.apps import cot, demo, evaluate, predict
    from aurora_trl.modeling import AuroraForSegmentation

    for module in (evaluate, predict, demo, cot):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        assert parser.get_default("max_new_tokens") == 2048, module.__name__
    for method in (AuroraForSegmentation.segment, AuroraForSegmentation.segment_batch):
        assert inspect.signature(method).parameters["max_new_tokens"].default == 2048


def test_answer_checks_read_the_answer_as_the_rewards_do():
    from aurora_trl.apps.evaluate import answer_checks
    from aurora_trl.text import format_cot, sft_target

    good = sft_target(format_cot("red dog left.", "dog low from 2.", "first sound, the red dog.", "dog"))
    row = {"text": good, "seg_emitted": True, "class_name": "dog"}
    assert answer_checks(row) == {"own_seg": 1, "four_steps": 1, "class_ok": 1, "reasoning": good}
    # inference appended the [SEG]; the steps are empty headers; the class is wrong
    bare = "Step 1: Step 2: Step 3: Step 4: The target is cat. It is [SEG]."
    checks = answer_checks({"text": bare, "seg_emitted": False, "class_name": "dog"})
    assert (checks["own_seg"], checks["four_steps"], checks["class_ok"]) == (0, 0, 0)
    assert answer_checks({"text": "The target is nothing.", "seg_emitted": True, "class_name": "null"})["class_ok"]
