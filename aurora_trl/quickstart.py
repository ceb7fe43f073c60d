"""`aurora-trl quickstart`: every part of AURORA, end to end, on a laptop CPU in minutes.

    aurora-trl quickstart [--out quickstart] [--steps-scale 1.0] [--eval-limit 8]

1. synthetic Ref-AVS clips (`aurora-trl data synth`) built into a data set (`aurora-trl data build`);
2. a tiny random AURORA model (`aurora-trl tiny --sam-size 128`), scored before training;
3. the four tiny recipes in `recipes/tiny/`, each in its own process exactly as `python recipes/tiny/X.yaml`
   would run it (only `--max_steps` is scaled): Stage 0 teacher, Stage 1 CoT SFT with distillation, Stage 2
   reflective SFT, Stage 3 GRPO; each stage's merged model is scored on Seen, Unseen and Null;
4. `results.md`: one row per model (Seen J/F, Unseen J/F, Null S), and `curves.png`: the training curves.

Everything lands in `--out`, laid out as the recipes expect (`data/`, `models/`, `runs/`), so each stage can be
rerun on its own from there: `cd quickstart && python ../recipes/tiny/sft.yaml`.
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path


RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "tiny"
# (row label, recipe, output_dir in the recipe): the order is the training order, each stage starting from the last.
STAGES = [
    ("Stage 0: teacher", "teacher.yaml", "runs/tiny-teacher"),
    ("Stage 1: CoT SFT + distillation", "sft.yaml", "runs/tiny-sft"),
    ("Stage 2: reflective SFT", "reflect.yaml", "runs/tiny-reflect"),
    ("Stage 3: GRPO", "grpo.yaml", "runs/tiny-grpo"),
]
UNTRAINED = "untrained"
TINY_SAM_SIZE = 128
COLUMNS = [("test_s", "J", "Seen J"), ("test_s", "F", "Seen F"), ("test_u", "J", "Unseen J")]
COLUMNS += [("test_u", "F", "Unseen F"), ("test_n", "S", "Null S ↓")]


def prepare_inputs(out: Path, clips: int, seed: int) -> None:
    """The synthetic data set and the tiny model, where the tiny recipes look for them."""
    from aurora_trl.modeling.tiny import save_tiny_model
    from data_prep.build import build_dataset
    from data_prep.synth import write_synthetic_refavs

    raw = out / "data" / "synth"
    write_synthetic_refavs(raw, clips=clips, seed=seed)
    build_dataset(
        raw, out / "data" / "synth-ds", stage1=raw / "stage1_cot.json", stage2=raw / "stage2_reflective.jsonl"
    )
    # SAM at 128 px: its encoder then sees an 8x8 grid of the 64-px frames, fine enough for the small shapes (at 64 px
    # the 4x4 grid cannot place them, and the mask losses drive the decoder to predict nothing).
    save_tiny_model(out / "models" / "tiny", seed=seed, sam_image_size=TINY_SAM_SIZE)


def recipe_steps(recipe: Path) -> int:
    from aurora_trl.launch import read_recipe

    return int(read_recipe(recipe)[2]["max_steps"])


def train_stage(out: Path, recipe: Path, steps_scale: float) -> float:
    """Run one recipe in a child process (as `python recipe.yaml` would), in `out`; returns its seconds."""
    steps = max(1, math.ceil(recipe_steps(recipe) * steps_scale))
    command = [sys.executable, "-m", "aurora_trl.launch", str(recipe), "--max_steps", str(steps)]
    start = time.perf_counter()
    # The child prints the Trainer's progress bar and logs to this terminal: that is the progress a user sees.
    subprocess.run(command, cwd=out, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def score(model_dir: Path, dataset, out: Path, limit: int, max_new_tokens: int) -> dict:
    from aurora_trl.evaluate import evaluate
    from aurora_trl.modeling import AuroraForSegmentation, load_processor

    model = AuroraForSegmentation.from_pretrained(model_dir).eval()
    splits = [s for s in ("test_s", "test_u", "test_n") if s in dataset]
    return evaluate(
        model, load_processor(model_dir), dataset, splits, out, max_new_tokens=max_new_tokens, limit=limit, overlays=1
    )


def results_table(results: dict[str, dict]) -> str:
    """Markdown: one row per model, the benchmark's numbers as columns."""
    lines = ["| model | " + " | ".join(c[2] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for label, metrics in results.items():
        cells = [metrics.get(split, {}).get(key) for split, key, _ in COLUMNS]
        lines.append(f"| {label} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def run_quickstart(
    out: Path,
    steps_scale: float = 1.0,
    eval_limit: int = 8,
    clips: int = 100,
    max_new_tokens: int = 48,
    seed: int = 0,
    recipes: Path = RECIPES,
) -> dict[str, dict]:
    """The whole pipeline; returns `{row label: metrics}` and writes `results.md` and `curves.png` to `out`."""
    from datasets import load_from_disk

    from aurora_trl.curves import plot_training_curves

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    say(f"[data] {clips} synthetic clips and a tiny model in {out}")
    prepare_inputs(out, clips, seed)
    dataset = load_from_disk(str(out / "data" / "synth-ds"))
    say("[eval] the untrained model")
    results = {
        UNTRAINED: score(out / "models" / "tiny", dataset, out / "eval" / UNTRAINED, eval_limit, max_new_tokens)
    }
    timings = {}
    for number, (label, recipe, run_dir) in enumerate(STAGES, start=1):
        say(f"[{number}/{len(STAGES)}] {label}: {recipes / recipe}")
        timings[label] = train_stage(out, recipes / recipe, steps_scale)
        say(f"[eval] {label}")
        results[label] = score(
            out / run_dir / "merged", dataset, out / "eval" / Path(run_dir).name, eval_limit, max_new_tokens
        )
        (out / "results.md").write_text(results_table(results), encoding="utf-8")  # complete after every stage
    runs = {label: out / run_dir for label, _, run_dir in STAGES}
    plot_training_curves(runs, out / "curves.png")
    summary = {"results": results, "train_seconds": timings, "steps_scale": steps_scale, "eval_limit": eval_limit}
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return results


def say(message: str) -> None:
    print(f"\n=== {message}", flush=True)


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="quickstart", help="folder for data, models, runs, results.md, curves.png")
    parser.add_argument(
        "--steps-scale", type=float, default=1.0, help="multiply each recipe's max_steps (0.25 for a smoke run)"
    )
    parser.add_argument("--eval-limit", type=int, default=8, help="clips scored per split after each stage")
    parser.add_argument("--clips", type=int, default=100, help="synthetic clips (videos) to generate")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="reasoning length limit when scoring")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of the tiny model")
    parser.add_argument("--recipes", default=str(RECIPES), help="folder of the tiny recipes")


def run(args) -> int:
    recipes = Path(args.recipes)
    missing = [r for _, r, _ in STAGES if not (recipes / r).is_file()]
    if missing:
        print(f"error: {recipes} lacks {', '.join(missing)} (run from a source checkout, or pass --recipes)")
        return 2
    start = time.perf_counter()
    try:
        results = run_quickstart(
            Path(args.out), args.steps_scale, args.eval_limit, args.clips, args.max_new_tokens, args.seed, recipes
        )
    except subprocess.CalledProcessError as err:
        print(f"error: a training stage failed (exit code {err.returncode}); its output is above", file=sys.stderr)
        return 1
    say(f"done in {time.perf_counter() - start:.0f} s; results in {Path(args.out) / 'results.md'}")
    print(results_table(results))
    print(f"training curves: {Path(args.out) / 'curves.png'}")
    return 0
