"""`aurora-trl quickstart` end to end with a smaller step budget: synthetic data, the four tiny recipes in their
own processes, a score after each stage, the table and the curves."""

import math

import pytest
from PIL import Image

from aurora_trl.curves import PANELS, curve_series
from aurora_trl.quickstart import COLUMNS, STAGES, UNTRAINED, results_table, run_quickstart


pytestmark = pytest.mark.slow


def test_quickstart_trains_every_stage_and_beats_the_untrained_model(tmp_path):
    out = tmp_path / "qs"
    results = run_quickstart(out, steps_scale=0.25, eval_limit=4, clips=40, max_new_tokens=16)

    labels = [UNTRAINED] + [label for label, _, _ in STAGES]
    assert list(results) == labels
    for label in labels:  # every cell of the table is a number
        for split, key, _ in COLUMNS:
            value = results[label][split][key]
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (label, split, key, value)
    table = (out / "results.md").read_text()
    assert table == results_table(results) and all(f"| {label} |" in table for label in labels)
    assert "–" not in table
    seen_j = {label: results[label]["test_s"]["J"] for label in labels}
    print("Seen J per stage:", seen_j)
    assert seen_j[STAGES[-1][0]] > seen_j[UNTRAINED], seen_j

    # Each stage ran its recipe to the end and left the merged model the next stage starts from.
    for _, _, run_dir in STAGES:
        assert (out / run_dir / "merged" / "config.json").is_file()
        assert (out / run_dir / "trainer_state.json").is_file()
    series, starts = curve_series({label: out / run_dir for label, _, run_dir in STAGES})
    assert [label for _, label in starts] == [label for label, _, _ in STAGES]
    assert {"loss/ce", "loss/bce", "loss/dice", "loss/distill"} <= set(series["loss terms"])
    assert {"rewards/format_reward/mean", "rewards/class_reward/mean", "rewards/iou_reward/mean"} <= set(
        series["rewards per function"]
    )
    assert {"mask/iou", "iou/mean"} <= set(series["mask IoU (train batches)"])
    with Image.open(out / "curves.png") as plot:
        assert plot.format == "PNG" and plot.width > 1000 and len(PANELS) == 3
