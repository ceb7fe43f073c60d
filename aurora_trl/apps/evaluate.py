"""`aurora-trl eval`: the Ref-AVS benchmark's numbers for a model, with a report, a per-clip CSV and overlays.

    aurora-trl eval --model DIR --data DIR [--splits test_s test_u test_n] [--protocol refavs|aurora] --out DIR
    aurora-trl eval --benchmark avsbench --model DIR --data DIR [--splits test] --out DIR

For every row of the chosen splits the model reasons and segments (`AuroraForSegmentation.segment_batch`: greedy,
`--batch-size` clips per `generate`); the masks are scored with `aurora_trl.metrics.evaluate_clips`: J and F on Seen
(test_s) and Unseen (test_u) and over the batches of both ("Mix"), S on Null (test_n, lower is better). Written to `--out`:

    metrics.json     every number, per split, with the protocol
    results.md       the table: Seen J/F, Unseen J/F, Mix J/F, Null S
    clips.csv        uid, split, class, J, F or S, the answer checks (own [SEG], four steps, class), the reasoning
    overlays/        frame strips (prediction filled and outlined, ground truth outlined) of the best and worst
                     clips of each split

With `--benchmark avsbench` (a data set of `aurora-trl data build-avsbench`) the same files hold AVSBench's J and F
per split (each clip scored alone over its annotated frames, then the mean over clips).
"""

import csv
import json
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from aurora_trl.apps.visualize import overlay_strip
from aurora_trl.data_row import annotated_frames, decode_audio, mask_tensor
from aurora_trl.metrics import REFAVS_BATCH_CLIPS, REFAVS_J_THRESHOLD, evaluate_clips, f_measure, mask_iou, null_s
from aurora_trl.rewards import class_reward, reasoning_reward
from aurora_trl.text import MAX_ANSWER_TOKENS


SPLIT_NAMES = {"test_s": "Seen", "test_u": "Unseen", "test_n": "Null"}


def predict_split(model, processor, rows, max_new_tokens: int) -> list[dict]:
    """Reasoning text, mask logits and ground truth of each row, generated as one batch."""
    clips = [
        ([img.convert("RGB") for img in row["images"]], decode_audio(row["audio"]), row["expression"]) for row in rows
    ]
    with torch.no_grad():
        outputs = model.segment_batch(clips, processor=processor, max_new_tokens=max_new_tokens)
    return [
        {
            "uid": row["uid"],
            "class_name": row["class_name"],
            "is_null": row["is_null"],
            "text": out.text,
            "seg_emitted": bool(out.seg_emitted),
            "logits": out.mask_logits.float().cpu(),
            "target": mask_tensor(row["masks"]),
            "annotated": annotated_frames(row, len(clip[0])),
            "frames": clip[0],
        }
        for row, clip, out in zip(rows, clips, outputs)
    ]


# What each answer is checked for, besides its masks: the model wrote `[SEG]` itself (rather than inference
# appending it), its text has the four steps with content, and it names the referred class (null for null rows).
ANSWER_CHECKS = ("own_seg", "four_steps", "class_ok")


def answer_checks(result: dict) -> dict:
    """The answer's text and whether it passes each of `ANSWER_CHECKS` (as 0/1)."""
    text = result["text"]
    return {
        "own_seg": int(result["seg_emitted"]),
        "four_steps": int(reasoning_reward([text])[0] == 1.0),
        "class_ok": int(class_reward([text], class_name=[result["class_name"]])[0] == 2.0),
        "reasoning": text,
    }


def clip_scores(result: dict, protocol: str) -> dict:
    """One clip's J and F (or S for a null row) on its annotated frames, with the protocol's threshold and sigmoid."""
    logits, target = result["logits"][result["annotated"]], result["target"][result["annotated"]]
    if result["is_null"]:
        return {"S": null_s(logits)}
    threshold = REFAVS_J_THRESHOLD if protocol == "refavs" else 0.5
    return {
        "J": mask_iou(logits, target, threshold),
        "F": f_measure(logits, target, apply_sigmoid=protocol != "aurora"),  # AURORA's variant scores raw logits
    }


def evaluate(
    model,
    processor,
    dataset,
    splits,
    out: Path,
    protocol: str = "refavs",
    max_new_tokens: int = MAX_ANSWER_TOKENS,
    limit: int | None = None,
    overlays: int = 2,
    batch_size: int = REFAVS_BATCH_CLIPS,
) -> dict:
    """Score `splits` of a data set; writes the report files to `out` and returns the metrics.

    Clips stream through in the protocol's scoring batches (4 clips, or 1 for AURORA's and AVSBench's), so memory
    does not grow with the split: only each batch's scores and each clip's score are kept. The overlay clips are predicted
    again at the end (greedy decoding gives the same masks). `batch_size` clips share a `generate`, whatever the
    scoring batch: predicted clips wait until their scoring batch is complete.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(exist_ok=True)
    batch = REFAVS_BATCH_CLIPS if protocol == "refavs" else 1
    batch_size = max(1, batch_size)
    metrics, batch_scores, rows_out = {"protocol": protocol}, {}, []
    for split in splits:
        rows = dataset[split] if limit is None else dataset[split].select(range(min(limit, len(dataset[split]))))
        if len(rows) == 0:
            continue
        null = split == "test_n"
        batch_scores[split], ranked, pending = [], [], []  # pending: predicted clips waiting for a full scoring batch
        progress = tqdm(total=len(rows), desc=f"eval {split}", unit="clip")
        for start in range(0, len(rows), batch_size):
            results = predict_split(
                model, processor, rows.select(range(start, min(start + batch_size, len(rows)))), max_new_tokens
            )
            progress.update(len(results))
            for offset, r in enumerate(results):
                scores = clip_scores(r, protocol)
                rows_out.append(
                    {"uid": r["uid"], "split": split, "class": r["class_name"], **scores, **answer_checks(r)}
                )
                ranked.append((scores["J"] if not null else -scores["S"], start + offset))  # higher is better
            pending += results
            last = start + batch_size >= len(rows)
            while len(pending) >= batch or (last and pending):  # the protocol's scoring batches
                scored, pending = pending[:batch], pending[batch:]
                batch_scores[split].append(
                    evaluate_clips(
                        [r["logits"] for r in scored],
                        [r["target"] for r in scored],
                        null=null,
                        protocol=protocol,
                        annotated=[r["annotated"] for r in scored],
                    )
                )
        progress.close()
        metrics[split] = mean_of_batches(batch_scores[split])
        ranked.sort(reverse=True)
        picks = {"best": ranked[:overlays], "worst": ranked[::-1][:overlays]}
        for label, chosen in picks.items():
            for rank, (_, index) in enumerate(chosen):
                (r,) = predict_split(model, processor, rows.select([index]), max_new_tokens)
                strip = overlay_strip(r["frames"], r["logits"], r["target"])
                strip.save(out / "overlays" / f"{split}_{label}{rank}_{r['uid'].replace('/', '_')}.png")
    mixed = batch_scores.get("test_s", []) + batch_scores.get("test_u", [])
    if mixed:
        metrics["mix"] = mean_of_batches(mixed)
    if rows_out:
        metrics["answers"] = {key: sum(r[key] for r in rows_out) / len(rows_out) for key in ANSWER_CHECKS}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    (out / "results.md").write_text(results_table(metrics), encoding="utf-8")
    with open(out / "clips.csv", "w", newline="", encoding="utf-8") as f:
        fields = ["uid", "split", "class", "J", "F", "S", *ANSWER_CHECKS, "reasoning"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows_out)
    return metrics


def mean_of_batches(scores: list[dict]) -> dict:
    """A split's metrics: the mean over its scoring batches, as the benchmark averages; `clips` counts clips.
    For Mix, the batches of Seen and Unseen together."""
    keys = [k for k in scores[0] if k != "clips"]
    return {**{k: sum(s[k] for s in scores) / len(scores) for k in keys}, "clips": sum(s["clips"] for s in scores)}


def results_table(metrics: dict) -> str:
    def cell(split, key):
        value = metrics.get(split, {}).get(key)
        return "–" if value is None else f"{value:.4f}"

    if metrics["protocol"] == "avsbench":  # J and F per split, each the mean over its clips
        splits = [split for split, scores in metrics.items() if isinstance(scores, dict) and "J" in scores]
        rows = "".join(f"| {split} | {cell(split, 'J')} | {cell(split, 'F')} |\n" for split in splits)
        return "Protocol: avsbench\n\n| split | J | F |\n|---|---|---|\n" + rows

    header = "| Seen J | Seen F | Unseen J | Unseen F | Mix J | Mix F | Null S (lower is better) |\n|---|---|---|---|---|---|---|\n"
    row = [
        cell("test_s", "J"),
        cell("test_s", "F"),
        cell("test_u", "J"),
        cell("test_u", "F"),
        cell("mix", "J"),
        cell("mix", "F"),
        cell("test_n", "S"),
    ]
    return f"Protocol: {metrics['protocol']}\n\n" + header + "| " + " | ".join(row) + " |\n"


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="AURORA model folder (or Hub id)")
    parser.add_argument("--data", required=True, help="data set folder written by `aurora-trl data build`")
    parser.add_argument(
        "--benchmark",
        choices=("refavs", "avsbench"),
        default="refavs",
        help="refavs: a data set of `data build`; avsbench: one of `data build-avsbench` (its own J and F, per clip)",
    )
    parser.add_argument("--splits", nargs="+", help="splits to score (default: test_s test_u test_n; AVSBench: test)")
    parser.add_argument(
        "--protocol",
        choices=("refavs", "aurora"),
        default="refavs",
        help="Ref-AVS only. refavs: the benchmark's (256 px, J at 0.4); aurora: AURORA's own variant",
    )
    parser.add_argument("--max-new-tokens", type=int, default=MAX_ANSWER_TOKENS, help="answer length limit (AURORA's)")
    parser.add_argument("--limit", type=int, help="score only the first N rows of each split")
    parser.add_argument(
        "--batch-size", type=int, default=REFAVS_BATCH_CLIPS, help="clips per generate call (memory vs speed)"
    )
    parser.add_argument("--out", required=True, help="folder for metrics.json, results.md, clips.csv, overlays/")


def run(args) -> int:
    from datasets import load_from_disk

    from aurora_trl.modeling import AuroraForSegmentation, load_processor

    avsbench = args.benchmark == "avsbench"
    protocol = "avsbench" if avsbench else args.protocol
    splits = args.splits or (["test"] if avsbench else list(SPLIT_NAMES))
    try:
        dataset = load_from_disk(args.data)
    except FileNotFoundError as err:
        print(f"error: cannot read the data set {args.data}: {err}", file=sys.stderr)
        return 2
    unknown = [s for s in splits if s not in dataset]
    if unknown:
        print(f"error: split(s) {', '.join(unknown)} not in {args.data} (has {', '.join(dataset)})", file=sys.stderr)
        return 2
    model = AuroraForSegmentation.from_pretrained(args.model).eval()
    metrics = evaluate(
        model,
        load_processor(args.model),
        dataset,
        splits,
        Path(args.out),
        protocol,
        args.max_new_tokens,
        args.limit,
        batch_size=args.batch_size,
    )
    print(results_table(metrics))
    keep_with_model(Path(args.model), metrics)
    return 0


def keep_with_model(model_dir: Path, metrics: dict) -> None:
    """Leave the metrics in a local model folder (`eval_results.json`), where the model card of a later
    `push_to_hub` finds them; a folder that cannot be written is said, not an error."""
    from aurora_trl.modeling.hub import EVAL_RESULTS

    if not model_dir.is_dir():
        return
    try:
        (model_dir / EVAL_RESULTS).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    except OSError as err:
        print(f"note: the metrics were not kept beside the model ({err})", file=sys.stderr)
