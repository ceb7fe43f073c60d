"""Zero-shot transfer to unreferenced segmentation on the embedded default (`aurora-trl quickstart --avsbench`).

How much of each quickstart stage's score, trained on synthetic Ref-AVS only, carries over to the synthetic AVSBench
S4 twin's test split. The rows are the untrained tiny model, the model after each stage (never trained on the twin),
and the Stage-3 model fine-tuned on the twin's training split with `recipes/tiny/avsbench.yaml`, the supervised
reference. The columns are AVSBench's J and F (each clip scored alone, then the mean over clips) and the share of
answers that wrote their own `[SEG]`. The twin's clips are new scenes with a fixed expression ("The object that
makes the sound.") and 5 frames instead of 10.
"""

import json
from pathlib import Path

from aurora_trl.apps.quickstart import RECIPES, STAGE_RUNS, UNTRAINED, say, train_stage
from data_prep.avsbench import build_avsbench
from data_prep.synth_avsbench import write_synthetic_avsbench


FINE_TUNED = "Stage 3 + S4 fine-tuning (supervised reference)"
# A seed offset so that the twin's scenes are not the Ref-AVS data's.
TWIN_SEED_OFFSET = 1000


def score_on_twin(model_dir: Path, dataset, out: Path, limit: int | None, max_new_tokens: int) -> dict:
    from aurora_trl.apps.evaluate import evaluate
    from aurora_trl.modeling import AuroraForSegmentation, load_processor

    model = AuroraForSegmentation.from_pretrained(model_dir).eval()
    processor = load_processor(model_dir)
    metrics = evaluate(model, processor, dataset, ["test"], out, "avsbench", max_new_tokens, limit, overlays=1)
    return {**metrics["test"], **metrics.get("answers", {})}


def transfer_table(results: dict[str, dict]) -> str:
    lines = ["| model | S4 twin test J | F | own [SEG] |", "|---|---|---|---|"]
    for label, scores in results.items():
        lines.append(f"| {label} | {scores['J']:.3f} | {scores['F']:.3f} | {scores.get('own_seg', 0.0):.2f} |")
    return "\n".join(lines) + "\n"


def run_transfer(
    quickstart: Path,
    clips: int = 200,
    seed: int = 0,
    steps_scale: float = 1.0,
    eval_limit: int | None = None,
    max_new_tokens: int = 160,
    recipes: Path = RECIPES,
) -> dict[str, dict]:
    """Score a finished quickstart's models on a fresh S4 twin (built in `quickstart/data/`) and fine-tune the
    Stage-3 model on it; writes `avsbench.json` and `avsbench.md` to `quickstart` and returns `{row: scores}`."""
    from datasets import load_from_disk

    quickstart = Path(quickstart).resolve()
    twin, built = quickstart / "data" / "avsbench-s4", quickstart / "data" / "avsbench-s4-ds"
    say(f"[avsbench] a synthetic S4 twin of {clips} clips")
    write_synthetic_avsbench(twin, "s4", clips=clips, seed=seed + TWIN_SEED_OFFSET, size=64)
    build_avsbench(twin, built, "s4")
    dataset = load_from_disk(str(built))
    models = {UNTRAINED: quickstart / "models" / "tiny"}
    models.update({label: quickstart / run_dir / "merged" for label, run_dir in STAGE_RUNS.items()})
    say(f"[avsbench] {FINE_TUNED}")
    stage3 = models[list(STAGE_RUNS)[-1]]
    options = ("--model_name_or_path", str(stage3), "--dataset_name", str(built), "--eval_strategy", "no")
    train_stage(quickstart, recipes / "avsbench.yaml", steps_scale, seed, options)
    models[FINE_TUNED] = quickstart / "runs" / "tiny-avsbench" / "merged"
    results = {}
    for index, (label, path) in enumerate(models.items()):
        say(f"[avsbench] scoring {label}")
        results[label] = score_on_twin(
            path, dataset, quickstart / "eval-avsbench" / str(index), eval_limit, max_new_tokens
        )
    (quickstart / "avsbench.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (quickstart / "avsbench.md").write_text(transfer_table(results), encoding="utf-8")
    return results
