"""AURORA's claims as ablations on the embedded default (synthetic data, tiny model), over seeds: one command.

    python bench/bench_ablations.py [--out ablations] [--seeds 0 1 2] [--steps-scale 1.0]

For each seed it runs the quickstart (`aurora_trl.apps.quickstart`: data, tiny model, the four tiny recipes, a score
after each stage) in `OUT/seed{S}`, then trains and scores, from the same checkpoints, one variant per claim:

| claim | variant | compared with |
|---|---|---|
| the distillation loss keeps Stage 1's masks as good as Stage 0's | Stage 1 with `distill_loss_weight 0` | Stage 1 |
| the rollout mask loss helps Stage 3 | Stage 3 with `bce_loss_weight 0`, `dice_loss_weight 0` | Stage 3 |
| GRPO does more than supervised training would | Stage 2 trained on from its checkpoint for the seconds Stage 3 took | Stage 3 |
| class and format rewards help beside the IoU reward | Stage 3 with `reward_funcs [iou]` | Stage 3 |

`OUT/ablations.md` gives each model's score (the mean of Seen J, Unseen J and 1 − Null S), the three numbers and
the answer checks of `aurora-trl eval` (own `[SEG]`, four steps, class named), as the mean over the seeds ± half
their range; `OUT/ablations.json` holds every seed's numbers.
"""

import argparse
import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aurora_trl.apps.quickstart import RECIPES, STAGE_RUNS, run_quickstart, score, train_stage  # noqa: E402


LABELS = list(STAGE_RUNS)
STAGE1, STAGE2, STAGE3 = LABELS[1], LABELS[2], LABELS[3]
# (row label, recipe, output_dir, flags over the recipe): the variants, each trained from the recipe's own start.
NO_MASK_LOSS = ("--bce_loss_weight", "0", "--dice_loss_weight", "0")
VARIANTS = [
    ("Stage 1 without distillation", "sft.yaml", "runs/ablate-sft-no-distill", ("--distill_loss_weight", "0")),
    ("Stage 3 without rollout mask loss", "grpo.yaml", "runs/ablate-grpo-no-mask", NO_MASK_LOSS),
    (
        "Stage 3 with the IoU reward alone",
        "grpo.yaml",
        "runs/ablate-grpo-iou",
        ("--reward_funcs", "iou", "--reward_weights", "1.0"),
    ),
]
MORE_SFT = "Stage 2 + more SFT (Stage 3's seconds)"
# (table section, rows compared)
SECTIONS = [
    ("Stage 1: distillation", [LABELS[0], STAGE1, VARIANTS[0][0]]),
    ("Stage 3: rollout mask loss", [STAGE2, STAGE3, VARIANTS[1][0]]),
    ("Stage 3 against more Stage-2 SFT for the same compute", [STAGE2, STAGE3, MORE_SFT]),
    ("Stage 3: rewards", [STAGE3, VARIANTS[2][0]]),
]
CHECKS = ("own_seg", "four_steps", "class_ok")
COLUMNS = [("score", "score"), ("Seen J", "test_s.J"), ("Unseen J", "test_u.J"), ("Null S ↓", "test_n.S")]
COLUMNS += [
    ("own [SEG]", "answers.own_seg"),
    ("four steps", "answers.four_steps"),
    ("class named", "answers.class_ok"),
]


def row_numbers(metrics: dict) -> dict[str, float]:
    """The table's numbers of one model's `aurora-trl eval` metrics."""
    numbers = {"score": (metrics["test_s"]["J"] + metrics["test_u"]["J"] + 1 - metrics["test_n"]["S"]) / 3}
    numbers.update({"test_s.J": metrics["test_s"]["J"], "test_u.J": metrics["test_u"]["J"]})
    numbers["test_n.S"] = metrics["test_n"]["S"]
    numbers.update({f"answers.{key}": metrics.get("answers", {}).get(key, float("nan")) for key in CHECKS})
    return numbers


def train_runtime(run_dir: Path) -> tuple[float, int]:
    """`(seconds, steps)` of a finished run, from its `trainer_state.json` (the Trainer's own clock)."""
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return state["log_history"][-1]["train_runtime"], state["global_step"]


def run_seed(
    out: Path, seed: int, steps_scale: float, eval_limit: int | None, max_new_tokens: int, **pretraining_steps
) -> dict:
    """The quickstart and the variants for one seed: `{row label: numbers}`; `pretraining_steps` are the
    quickstart's `sam_pretraining_steps`, `lm_pretraining_steps` and `grounding_steps`."""
    from datasets import load_from_disk

    results = run_quickstart(
        out,
        steps_scale=steps_scale,
        eval_limit=eval_limit,
        max_new_tokens=max_new_tokens,
        seed=seed,
        **pretraining_steps,
    )
    dataset = load_from_disk(str(out / "data" / "synth-ds"))
    rows = {label: row_numbers(metrics) for label, metrics in results.items()}

    def train_and_score(recipe: str, run_dir: str, options: tuple[str, ...]) -> dict[str, float]:
        train_stage(out, RECIPES / recipe, steps_scale, seed, ("--output_dir", run_dir, *options))
        metrics = score(
            out / run_dir / "merged", dataset, out / "eval" / Path(run_dir).name, eval_limit, max_new_tokens
        )
        return row_numbers(metrics)

    for label, recipe, run_dir, options in VARIANTS:
        rows[label] = train_and_score(recipe, run_dir, options)
    # Stage 2 trained on from its own checkpoint, for the steps its step time fits into Stage 3's training time.
    grpo_seconds, _ = train_runtime(out / STAGE_RUNS[STAGE3])
    sft_seconds, sft_steps = train_runtime(out / STAGE_RUNS[STAGE2])
    more = max(1, round(grpo_seconds / (sft_seconds / sft_steps)))
    options = ("--model_name_or_path", f"{STAGE_RUNS[STAGE2]}/merged", "--max_steps", str(more))
    rows[MORE_SFT] = {**train_and_score("reflect.yaml", "runs/ablate-reflect-more", options), "steps": more}
    return rows


def ablation_table(per_seed: list[dict]) -> str:
    """Markdown: one section per claim, each cell the mean over seeds ± half their range."""
    lines = []
    for title, labels in SECTIONS:
        lines += [f"**{title}**", "", "| model | " + " | ".join(name for name, _ in COLUMNS) + " |"]
        lines.append("|---" * (len(COLUMNS) + 1) + "|")
        for label in labels:
            cells = []
            for _, key in COLUMNS:
                values = [seed[label][key] for seed in per_seed]
                mean = sum(values) / len(values)
                cells.append(f"{mean:.3f} ± {(max(values) - min(values)) / 2:.3f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="ablations", help="folder for every seed's runs and the table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of data, model and training")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply each recipe's max_steps")
    parser.add_argument("--eval-limit", type=int, help="rows scored per split (default: all)")
    parser.add_argument("--max-new-tokens", type=int, default=160, help="answer length limit when scoring")
    parser.add_argument(
        "--sam-pretraining-steps",
        type=int,
        default=0,
        help="the quickstart's point-prompt pretraining of the tiny SAM",
    )
    parser.add_argument(
        "--lm-pretraining-steps", type=int, default=0, help="the quickstart's text-only pretraining of the tiny LM"
    )
    parser.add_argument(
        "--grounding-steps", type=int, default=0, help="the quickstart's text-only grounding of the tiny [SEG] token"
    )
    args = parser.parse_args()
    out = Path(args.out).resolve()
    pretraining = dict(
        sam_pretraining_steps=args.sam_pretraining_steps,
        lm_pretraining_steps=args.lm_pretraining_steps,
        grounding_steps=args.grounding_steps,
    )
    per_seed = []
    for seed in args.seeds:
        per_seed.append(
            run_seed(out / f"seed{seed}", seed, args.steps_scale, args.eval_limit, args.max_new_tokens, **pretraining)
        )
        # Written after every seed, so that a long run stopped early still leaves the seeds it finished.
        done = args.seeds[: len(per_seed)]
        table = f"Mean ± half-range over seeds {', '.join(map(str, done))}.\n\n" + ablation_table(per_seed)
        (out / "ablations.md").write_text(table, encoding="utf-8")
        (out / "ablations.json").write_text(json.dumps({"seeds": done, "per_seed": per_seed}, indent=2))
    print(table)


if __name__ == "__main__":
    main()
