"""`aurora-trl quickstart`: every part of AURORA, end to end, on a laptop CPU in minutes.

    aurora-trl quickstart [--out quickstart] [--steps-scale 1.0] [--eval-limit N] [--seeds 0 1 2] [--avsbench]

1. synthetic Ref-AVS clips (`aurora-trl data synth`) built into a data set (`aurora-trl data build`);
2. a tiny random AURORA model (`aurora-trl tiny --sam-size 128`), scored before training; with
   `--sam-pretraining-steps N`, its SAM mask decoder first learns point prompts on the training clips, as a real SAM
   comes pretrained; with `--lm-pretraining-steps N`, its language model first learns the training answers from
   their text alone, as a real LLM comes pretrained; with `--grounding-steps N` (after SAM's), its `[SEG]` token
   then learns to point SAM at the object each answer names;
3. the four tiny recipes in `recipes/tiny/`, each in its own process exactly as `python recipes/tiny/X.yaml`
   would run it (only `--max_steps` is scaled): Stage 0 teacher, Stage 1 CoT SFT with distillation, Stage 2
   reflective SFT, Stage 3 GRPO; each stage's merged model is scored on Seen, Unseen and Null;
4. `results.md`: one row per model (Seen J/F, Unseen J/F, Null S), and `curves.png`: the training curves;
5. with `--avsbench`, each model's zero-shot score on a synthetic AVSBench S4 twin next to a model fine-tuned on it
   (`aurora_trl/apps/transfer.py`, `avsbench.md`).

Everything lands in `--out`, laid out as the recipes expect (`data/`, `models/`, `runs/`), so each stage can be
rerun on its own from there: `cd quickstart && python ../recipes/tiny/sft.yaml`. With several `--seeds`, each seed
(of the data, the model and the training) runs in `--out/seed{S}`, and `--out/results.md` gives every cell as the mean over the
seeds ± half their range: what a difference between two rows must exceed to mean anything.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from aurora_trl.stages import STAGES


RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "tiny"
# Each stage's tiny recipe writes to runs/tiny-{key} and starts from the previous stage's merged model there.
STAGE_RUNS = {stage.label: f"runs/tiny-{stage.key}" for stage in STAGES}
UNTRAINED = "untrained"
TINY_SAM_SIZE = 128
# The tiny model's top layer attends to the last 6 tokens only. With full attention, its two layers average the
# whole 500-token context into every state: answers lose their place and loop, and the [SEG] state is nearly the
# same whatever the answer says. Local attention makes each step's text follow from the words before it.
TINY_LOCAL_WINDOW = 6
# Clips generated at once: a tiny model's answers are short, and a batch of 16 keeps scoring a few seconds a split.
EVAL_BATCH = 16
COLUMNS = [("test_s", "J", "Seen J"), ("test_s", "F", "Seen F"), ("test_u", "J", "Unseen J")]
COLUMNS += [("test_u", "F", "Unseen F"), ("test_n", "S", "Null S ↓")]


def prepare_inputs(
    out: Path,
    clips: int,
    seed: int,
    sam_pretraining_steps: int = 0,
    lm_pretraining_steps: int = 0,
    grounding_steps: int = 0,
) -> None:
    """The synthetic data set and the tiny model, where the tiny recipes look for them."""
    from aurora_trl.tiny import save_tiny_model
    from aurora_trl.tiny_processor import corpus_from_dataset
    from data_prep.build import build_dataset
    from data_prep.synth import write_synthetic_refavs

    raw, built = out / "data" / "synth", out / "data" / "synth-ds"
    write_synthetic_refavs(raw, clips=clips, seed=seed)
    build_dataset(raw, built, stage1=raw / "stage1_cot.json", stage2=raw / "stage2_reflective.jsonl")
    # SAM at 128 px: its encoder then sees an 8x8 grid of the 64-px frames, fine enough for the small shapes (at 64 px
    # the 4x4 grid cannot place them, and the mask losses drive the decoder to predict nothing).
    # The tokenizer learns the training texts, a token per word: a whole answer is then about 60 tokens (a
    # reflective one 120), which the GRPO rollouts can reach; byte-level units made it 200-500.
    # With `sam_pretraining_steps`, SAM's mask decoder first learns to segment what a point prompt points at, on the
    # training clips: a real model's SAM comes pretrained so, and a random one, trained from scratch with the language
    # model, learns to ignore its [SEG] prompt. With `lm_pretraining_steps`, the language model first learns the
    # training answers from their text alone: a real LLM comes able to read its prompt, and the stages' few hundred
    # rows do not teach a random one that. With `grounding_steps`, the [SEG] token then learns to point SAM at the
    # object that each training answer names, as a real model's [SEG] comes grounded.
    save_tiny_model(
        out / "models" / "tiny",
        seed=seed,
        sam_image_size=TINY_SAM_SIZE,
        corpus=corpus_from_dataset(built),
        local_window=TINY_LOCAL_WINDOW,
        sam_pretraining_data=built if sam_pretraining_steps else None,
        sam_pretraining_steps=sam_pretraining_steps,
        lm_pretraining_data=built if lm_pretraining_steps else None,
        lm_pretraining_steps=lm_pretraining_steps,
        grounding_data=built if grounding_steps else None,
        grounding_steps=grounding_steps,
    )


def recipe_steps(recipe: Path) -> int:
    from aurora_trl.scripts.launch import read_recipe

    return int(read_recipe(recipe)[1]["max_steps"])


def train_stage(out: Path, recipe: Path, steps_scale: float, seed: int = 0, options: tuple[str, ...] = ()) -> float:
    """Run one recipe in a child process (as `python recipe.yaml` would), in `out`, with the training seed `seed` and
    any further `options` (flags that override the recipe); returns its seconds."""
    steps = max(1, math.ceil(recipe_steps(recipe) * steps_scale))
    command = [sys.executable, str(recipe), "--max_steps", str(steps), "--seed", str(seed)]
    start = time.perf_counter()
    # The child prints the Trainer's progress bar and logs to this terminal: that is the progress a user sees.
    subprocess.run([*command, *options], cwd=out, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def score(model_dir: Path, dataset, out: Path, limit: int, max_new_tokens: int) -> dict:
    from aurora_trl.apps.evaluate import evaluate
    from aurora_trl.modeling import AuroraForSegmentation, load_processor

    model = AuroraForSegmentation.from_pretrained(model_dir).eval()
    splits = [s for s in ("test_s", "test_u", "test_n") if s in dataset]
    return evaluate(
        model,
        load_processor(model_dir),
        dataset,
        splits,
        out,
        max_new_tokens=max_new_tokens,
        limit=limit,
        overlays=1,
        batch_size=EVAL_BATCH,
    )


def results_table(results: dict[str, dict], spreads: dict[str, dict] | None = None) -> str:
    """Markdown: one row per model, the benchmark's numbers as columns; with `spreads` (shaped as `results`), each
    cell reads `mean ± spread`."""
    lines = ["| model | " + " | ".join(c[2] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for label, metrics in results.items():
        cells = []
        for split, key, _ in COLUMNS:
            value = metrics.get(split, {}).get(key)
            spread = None if spreads is None else spreads[label].get(split, {}).get(key)
            cells.append("–" if value is None else f"{value:.3f}" + ("" if spread is None else f" ± {spread:.3f}"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def over_seeds(per_seed: list[dict[str, dict]]) -> tuple[dict[str, dict], dict[str, dict]]:
    """The mean and the half-range over seeds of every number of the table: `(means, spreads)`, each shaped as one
    seed's results (`{label: {split: {key: value}}}`)."""
    means, spreads = {}, {}
    for label in per_seed[0]:
        means[label], spreads[label] = {}, {}
        for split, key, _ in COLUMNS:
            values = [seed[label][split][key] for seed in per_seed if key in seed[label].get(split, {})]
            if values:
                means[label].setdefault(split, {})[key] = sum(values) / len(values)
                spreads[label].setdefault(split, {})[key] = (max(values) - min(values)) / 2
    return means, spreads


def run_quickstart(
    out: Path,
    steps_scale: float = 1.0,
    eval_limit: int | None = None,
    clips: int = 200,
    max_new_tokens: int = 160,
    seed: int = 0,
    recipes: Path = RECIPES,
    sam_pretraining_steps: int = 0,
    lm_pretraining_steps: int = 0,
    grounding_steps: int = 0,
) -> dict[str, dict]:
    """The whole pipeline for one seed; returns `{row label: metrics}` and writes `results.md` and `curves.png` to
    `out`."""
    from datasets import load_from_disk

    from aurora_trl.apps.curves import plot_training_curves
    from aurora_trl.tiny import GROUNDING_REPORT, LM_PRETRAINING_REPORT, SAM_PRETRAINING_REPORT

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    say(f"[data] {clips} synthetic clips and a tiny model in {out}")
    prepare_inputs(out, clips, seed, sam_pretraining_steps, lm_pretraining_steps, grounding_steps)
    dataset = load_from_disk(str(out / "data" / "synth-ds"))
    say("[eval] the untrained model")
    results = {
        UNTRAINED: score(out / "models" / "tiny", dataset, out / "eval" / UNTRAINED, eval_limit, max_new_tokens)
    }
    timings = {}
    for number, stage in enumerate(STAGES, start=1):
        label, recipe, run_dir = stage.label, stage.recipe, STAGE_RUNS[stage.label]
        say(f"[{number}/{len(STAGES)}] {label}: {recipes / recipe}")
        timings[label] = train_stage(out, recipes / recipe, steps_scale, seed)
        say(f"[eval] {label}")
        results[label] = score(
            out / run_dir / "merged", dataset, out / "eval" / Path(run_dir).name, eval_limit, max_new_tokens
        )
        (out / "results.md").write_text(results_table(results), encoding="utf-8")  # complete after every stage
    runs = {label: out / run_dir for label, run_dir in STAGE_RUNS.items()}
    plot_training_curves(runs, out / "curves.png")
    summary = {"results": results, "train_seconds": timings, "steps_scale": steps_scale, "eval_limit": eval_limit}
    for key, steps, report in (
        ("sam_pretraining", sam_pretraining_steps, SAM_PRETRAINING_REPORT),
        ("lm_pretraining", lm_pretraining_steps, LM_PRETRAINING_REPORT),
        ("seg_grounding", grounding_steps, GROUNDING_REPORT),
    ):
        if steps:
            summary[key] = json.loads((out / "models" / "tiny" / report).read_text())
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return results


def run_seeds(out: Path, seeds: list[int], **options) -> tuple[dict[str, dict], dict[str, dict] | None]:
    """[`run_quickstart`] for each seed; returns `(results, spreads)`.

    One seed runs in `out` and has no spreads. Several run in `out/seed{S}`; `out/results.md` then holds the mean
    over the seeds ± half their range, and `out/curves.png` the first seed's curves.
    """
    if len(seeds) == 1:
        return run_quickstart(Path(out), seed=seeds[0], **options), None
    out = Path(out)
    per_seed = [run_quickstart(out / f"seed{seed}", seed=seed, **options) for seed in seeds]
    means, spreads = over_seeds(per_seed)
    header = f"Mean ± half-range over seeds {', '.join(map(str, seeds))}.\n\n"
    (out / "results.md").write_text(header + results_table(means, spreads), encoding="utf-8")
    shutil.copyfile(out / f"seed{seeds[0]}" / "curves.png", out / "curves.png")
    (out / "results.json").write_text(
        json.dumps({"seeds": seeds, "mean": means, "half_range": spreads, "per_seed": per_seed}, indent=2),
        encoding="utf-8",
    )
    return means, spreads


def say(message: str) -> None:
    print(f"\n=== {message}", flush=True)


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="quickstart", help="folder for data, models, runs, results.md, curves.png")
    parser.add_argument(
        "--steps-scale", type=float, default=1.0, help="multiply each recipe's max_steps (0.25 for a smoke run)"
    )
    parser.add_argument("--eval-limit", type=int, help="rows scored per split after each stage (default: all)")
    parser.add_argument("--clips", type=int, default=200, help="synthetic clips (videos) to generate")
    parser.add_argument("--max-new-tokens", type=int, default=160, help="answer length limit when scoring")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds of the data and the tiny model; several give each number as mean ± half-range",
    )
    parser.add_argument("--recipes", default=str(RECIPES), help="folder of the tiny recipes")
    parser.add_argument(
        "--sam-pretraining-steps",
        type=int,
        default=0,
        help="first teach the tiny SAM to follow point prompts for this many steps (400 suffice; 0: off, the "
        "default, see BENCHMARKS.md)",
    )
    parser.add_argument(
        "--lm-pretraining-steps",
        type=int,
        default=0,
        help="first teach the tiny language model the training answers from their text alone for this many steps "
        "(300 suffice; 0: off, the default, see BENCHMARKS.md)",
    )
    parser.add_argument(
        "--grounding-steps",
        type=int,
        default=0,
        help="then teach the tiny model's [SEG] token to point SAM at the object each answer names, for this many "
        "steps (needs --sam-pretraining-steps; 400 suffice; 0: off, the default, see BENCHMARKS.md)",
    )
    parser.add_argument(
        "--avsbench", action="store_true", help="also score every stage zero-shot on a synthetic AVSBench S4 twin"
    )


def run(args) -> int:
    recipes = Path(args.recipes)
    missing = [stage.recipe for stage in STAGES if not (recipes / stage.recipe).is_file()]
    if missing:
        print(f"error: {recipes} lacks {', '.join(missing)} (run from a source checkout, or pass --recipes)")
        return 2
    start = time.perf_counter()
    options = dict(
        steps_scale=args.steps_scale,
        eval_limit=args.eval_limit,
        clips=args.clips,
        max_new_tokens=args.max_new_tokens,
        recipes=recipes,
        sam_pretraining_steps=args.sam_pretraining_steps,
        lm_pretraining_steps=args.lm_pretraining_steps,
        grounding_steps=args.grounding_steps,
    )
    try:
        results, spreads = run_seeds(Path(args.out), args.seeds, **options)
    except subprocess.CalledProcessError as err:
        print(f"error: a training stage failed (exit code {err.returncode}); its output is above", file=sys.stderr)
        return 1
    say(f"done in {time.perf_counter() - start:.0f} s; results in {Path(args.out) / 'results.md'}")
    print(results_table(results, spreads))
    print(f"training curves: {Path(args.out) / 'curves.png'}")
    if args.avsbench:
        from aurora_trl.apps.transfer import run_transfer, transfer_table

        for seed in args.seeds:  # each seed's quickstart is scored on its own twin
            folder = Path(args.out) / f"seed{seed}" if len(args.seeds) > 1 else Path(args.out)
            transfer = run_transfer(
                folder, args.clips, seed, args.steps_scale, args.eval_limit, args.max_new_tokens, recipes
            )
            say(f"zero-shot transfer to the AVSBench S4 twin (seed {seed}), in {folder / 'avsbench.md'}")
            print(transfer_table(transfer))
    return 0
