"""Stage-1 CoT paths from a Qwen2.5-Omni thinker, written as JSON lines; resumable.

    aurora-trl data cot --model PATH --data DIR --out FILE [--split train] [--max-new-tokens 2048] [--limit N]

For each row of a built data set (`aurora-trl data build`), the thinker hears the clip's audio, sees its frames,
is told the ground-truth class (AURORA's CoT generation prompt is not public; ours is
`aurora_trl.text.cot_generation_prompt`) and writes the four-step explanation. A path is *accepted* when it has
the four canonical steps and its answer names the ground-truth class; accepted lines carry `reasoning` (what
`data build --stage1` reads), rejected ones carry `rejected` and a `reason` (the builder reports them).

Every row gets exactly one line, flushed as soon as it is generated; a rerun skips the uids already in the file, so
a killed run resumes where it stopped.
"""

import json
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from aurora_trl.data_row import decode_audio
from aurora_trl.text import (
    MAX_ANSWER_TOKENS,
    cot_generation_prompt,
    has_canonical_steps,
    names_class,
    parse_answer_class,
)
from data_prep.dumps import read_jsonl_records


def judge_cot(text: str, class_name: str) -> str | None:
    """None when a generated path is usable as Stage-1 data, else the reason it is not."""
    if not has_canonical_steps(text):
        return "not the four canonical steps"
    named = parse_answer_class(text)
    if not names_class(named, class_name):
        return f"answer names {named!r}, ground truth is {class_name!r}"
    return None


def prepare_output(path: Path) -> set[str]:
    """Make `path` safe to append to and return the uids it already holds.

    A run killed mid-write can leave a last line without its newline; it is cut off (that uid is regenerated)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])
    return {r["uid"] for r in read_jsonl_records(path) if isinstance(r.get("uid"), str)}


def generate_cot(model, processor, rows, max_new_tokens: int = MAX_ANSWER_TOKENS) -> list[str]:
    """Greedy CoT text for a batch of data-set rows (each with expression, class_name, images, audio)."""
    import torch

    texts = [
        processor.apply_chat_template(
            cot_generation_prompt(r["expression"], r["class_name"], len(r["images"])),
            add_generation_prompt=True,
            tokenize=False,
        )
        for r in rows
    ]
    inputs = processor(
        text=texts,
        images=[img.convert("RGB") for r in rows for img in r["images"]],
        audio=[decode_audio(r["audio"]) for r in rows],
        return_tensors="pt",
        padding=True,
    ).to(model.device)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = out[:, inputs["input_ids"].shape[1] :]
    return [t.strip() for t in processor.batch_decode(new_tokens, skip_special_tokens=True)]


def load_thinker(path: str, device: str):
    """A Qwen2.5-Omni thinker from a thinker folder or a full Omni checkpoint (transformers' own class)."""
    import torch
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from aurora_trl.modeling.processing import bound_processor, load_processor
    from aurora_trl.modeling.tokens import stop_at_end_of_turn

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device).eval()
    processor = bound_processor(load_processor(path))  # the frame and audio caps the training recipes use
    stop_at_end_of_turn(model.generation_config, processor.tokenizer)
    return model, processor


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="Qwen2.5-Omni thinker: local folder or Hub id")
    parser.add_argument("--data", required=True, help="data set folder written by `aurora-trl data build`")
    parser.add_argument("--out", required=True, help="JSON-lines file to append to (resumable)")
    parser.add_argument("--split", default="train", help="split to run over")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_ANSWER_TOKENS, help="answer length limit (AURORA's)")
    parser.add_argument("--batch-size", type=int, default=1, help="rows per generate call")
    parser.add_argument("--limit", type=int, help="stop after this many rows of the split (done ones included)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def run(args) -> int:
    import torch
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(args.data)[args.split]
    except (FileNotFoundError, KeyError) as err:
        print(f"error: cannot read split {args.split!r} of {args.data}: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    done = prepare_output(out)
    uids = list(dataset["uid"])[: args.limit]
    todo = [i for i, uid in enumerate(uids) if uid not in done]
    print(f"{len(uids)} rows, {len(uids) - len(todo)} already in {out}, {len(todo)} to generate")
    if not todo:
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, processor = load_thinker(args.model, device)
    accepted = rejected = 0
    start = time.perf_counter()
    with open(out, "a", encoding="utf-8") as f:
        for begin in tqdm(range(0, len(todo), args.batch_size), desc="CoT", unit="batch"):
            batch = [dataset[i] for i in todo[begin : begin + args.batch_size]]
            for row, text in zip(batch, generate_cot(model, processor, batch, args.max_new_tokens)):
                reason = judge_cot(text, row["class_name"])
                if reason is None:
                    record, accepted = {"uid": row["uid"], "reasoning": text}, accepted + 1
                else:
                    record, rejected = {"uid": row["uid"], "rejected": text, "reason": reason}, rejected + 1
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
    elapsed = time.perf_counter() - start
    print(f"accepted {accepted}, rejected {rejected} in {elapsed:.1f} s ({len(todo) / elapsed:.2f} rows/s)")
    return 0
