"""`aurora-trl quickstart` end to end with a smaller step budget: synthetic data, the four tiny recipes in their
own processes, a score after each stage, the table and the curves."""

import json
import math

import pytest
from PIL import Image

from aurora_trl.apps.curves import PANELS, curve_series
from aurora_trl.apps.quickstart import COLUMNS, STAGE_RUNS, UNTRAINED, over_seeds, results_table, run_seeds
from aurora_trl.apps.transfer import FINE_TUNED, run_transfer, transfer_table


@pytest.mark.slow
def test_quickstart_trains_every_stage_and_beats_the_untrained_model(tmp_path):
    root = tmp_path / "qs"
    means, spreads = run_seeds(root, [0, 1], steps_scale=0.25, eval_limit=4, clips=40, max_new_tokens=16)
    per_seed = [json.loads((root / f"seed{seed}" / "results.json").read_text())["results"] for seed in (0, 1)]
    assert per_seed[0] != per_seed[1]  # each seed its own data, model and training
    assert (means, spreads) == over_seeds(per_seed)
    value = means[UNTRAINED]["test_s"]["J"]
    assert value == pytest.approx(sum(seed[UNTRAINED]["test_s"]["J"] for seed in per_seed) / 2)
    table = (root / "results.md").read_text()
    assert f"{value:.3f} ± {spreads[UNTRAINED]['test_s']['J']:.3f}" in table and (root / "curves.png").is_file()

    out = root / "seed0"  # each seed's run is a whole quickstart
    results = per_seed[0]

    labels = [UNTRAINED] + list(STAGE_RUNS)
    assert list(results) == labels
    for label in labels:  # every cell of the table is a number
        for split, key, _ in COLUMNS:
            value = results[label][split][key]
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (label, split, key, value)
    table = (out / "results.md").read_text()
    assert table == results_table(results) and all(f"| {label} |" in table for label in labels)
    assert "–" not in table
    # Over the seeds, the final model's masks beat the untrained model's (one seed's 4 clips after 10 steps of Stage 0
    # can still be empty masks: the mean is the number the table reports).
    seen_j = {label: means[label]["test_s"]["J"] for label in labels}
    print("Seen J per stage, mean over seeds:", seen_j)
    assert seen_j[labels[-1]] > seen_j[UNTRAINED] + 0.05, seen_j

    # Each stage ran its recipe to the end and left the merged model the next stage starts from.
    for run_dir in STAGE_RUNS.values():
        assert (out / run_dir / "merged" / "config.json").is_file()
        assert (out / run_dir / "trainer_state.json").is_file()
    series, starts = curve_series({label: out / run_dir for label, run_dir in STAGE_RUNS.items()})
    assert [label for _, label in starts] == list(STAGE_RUNS)
    assert {"loss/ce", "loss/bce", "loss/dice", "loss/distill"} <= set(series["loss terms"])
    assert {"rewards/format_reward/mean", "rewards/class_reward/mean", "rewards/iou_reward/mean"} <= set(
        series["rewards per function"]
    )
    assert {"mask/iou", "iou/mean"} <= set(series["mask IoU (train batches)"])
    with Image.open(out / "curves.png") as plot:
        assert plot.format == "PNG" and plot.width > 1000 and len(PANELS) == 3

    # Zero-shot transfer of every stage to a synthetic AVSBench S4 twin, next to a model fine-tuned on it.
    transfer = run_transfer(out, clips=10, seed=0, steps_scale=0.25, eval_limit=2, max_new_tokens=16)
    assert list(transfer) == [UNTRAINED, *STAGE_RUNS, FINE_TUNED]
    assert all(0.0 <= scores["J"] <= 1.0 and scores["clips"] == 2 for scores in transfer.values())
    assert (out / "runs" / "tiny-avsbench" / "merged" / "config.json").is_file()
    assert (out / "avsbench.md").read_text() == transfer_table(transfer)


def test_seed_table_gives_mean_and_half_range():
    one = {"m": {"test_s": {"J": 0.2, "F": 0.4}, "test_u": {"J": 0.1, "F": 0.3}, "test_n": {"S": 0.5}}}
    two = {"m": {"test_s": {"J": 0.4, "F": 0.4}, "test_u": {"J": 0.3, "F": 0.1}, "test_n": {"S": 0.1}}}
    means, spreads = over_seeds([one, two])
    assert means["m"]["test_s"]["J"] == pytest.approx(0.3) and spreads["m"]["test_s"]["J"] == pytest.approx(0.1)
    assert spreads["m"]["test_s"]["F"] == 0.0 and means["m"]["test_n"]["S"] == pytest.approx(0.3)
    assert "| m | 0.300 ± 0.100 | 0.400 ± 0.000 | 0.200 ± 0.100 | 0.200 ± 0.100 | 0.300 ± 0.200 |" in results_table(
        means, spreads
    )


def test_quickstart_pretrains_the_tiny_model_only_when_asked(tmp_path):
    """SAM's point pretraining, the LM's text pretraining and the [SEG] grounding run, and write their reports, only
    with their steps; one folder without and one with all three, so that the data and model are built twice, not six
    times."""
    from aurora_trl.apps.quickstart import prepare_inputs
    from aurora_trl.tiny import GROUNDING_REPORT, LM_PRETRAINING_REPORT, SAM_PRETRAINING_REPORT

    reports = {SAM_PRETRAINING_REPORT: "iou_own_point", LM_PRETRAINING_REPORT: "token_accuracy"}
    reports[GROUNDING_REPORT] = "iou_own_answer"
    prepare_inputs(tmp_path / "off", clips=20, seed=0)
    for name in reports:
        assert not (tmp_path / "off" / "models" / "tiny" / name).exists()
    steps = dict(sam_pretraining_steps=2, lm_pretraining_steps=2, grounding_steps=2)
    prepare_inputs(tmp_path / "on", clips=20, seed=0, **steps)
    for name, key in reports.items():
        report = json.loads((tmp_path / "on" / "models" / "tiny" / name).read_text())
        assert report["rows"] > 0 and key in report
