"""`aurora-trl eval` on the tiny model and synthetic data: every report file, with consistent numbers."""

import csv
import json

from aurora_trl.cli import main as cli_main


def test_eval_writes_metrics_table_csv_and_overlays(tiny_aurora_dir, synth_dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = cli_main(
        [
            "eval",
            "--model",
            str(tiny_aurora_dir),
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
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert any(n.startswith("test_s_best0") for n in overlays) and any(n.startswith("test_n_worst0") for n in overlays)


def test_eval_unknown_split_is_a_clear_error(synth_dataset, tmp_path, capsys):
    rc = cli_main(
        ["eval", "--model", "unused", "--data", str(synth_dataset), "--out", str(tmp_path), "--splits", "test_x"]
    )
    assert rc == 2 and "split(s) test_x not in" in capsys.readouterr().err
