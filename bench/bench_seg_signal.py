"""Does a model's `[SEG]` state carry its answer? A diagnosis of a (tiny) model on a built data set.

    python bench/bench_seg_signal.py --model quickstart/runs/tiny-teacher/merged --data quickstart/data/synth-ds \
        [--rows 160] [--decoder-oracle] [--scenes quickstart/data/synth/scenes.jsonl]

The masks of an AURORA model depend on its answer only through the final-layer state at `[SEG]`. This script
teacher-forces each of `--rows` non-null training rows with its direct answer `It is {class} [SEG].` (the right class
is in the text) and measures:

1. how much the `[SEG]` state varies between rows: the per-feature standard deviation over rows against the state's
   norm, and the same for the projector's output (the SAM prompt);
2. whether the class can be read from the state: a linear probe (multinomial logistic regression on standardised
   states, three quarters to fit, one quarter held out) against always guessing the majority class;
3. whether the masks follow the prompt: each row's clip decoded under its own prompt and under the prompt of the
   next row that names another class, the mean |change| of the mask logits against their mean |value| and the share
   of pixels that change side;
4. with `--decoder-oracle`, whether SAM can segment by class at all: the mask decoder trained alone (AdamW, lr 1e-3,
   300 steps of 4 clips) with one learned prompt per class in place of the projected state, and its held-out IoU;
   with `--scenes` (the `scenes.jsonl` of synthetic clips) also one prompt per slot of the target, one per colour,
   and a single prompt for every row (no information: the decoder alone).

A state that barely varies and a probe at the majority rate mean the text does not reach the masks: the masks are
then the same whatever the answer says, and neither the IoU reward nor the mask losses can teach the reasoning.
"""

import argparse
import json
import random
import sys
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def seg_states(model, processor, rows) -> tuple[torch.Tensor, list]:
    """`(states (N, H), per-row extras)`: each row's `[SEG]` state under its direct answer, its SAM image embeddings,
    sizes and ground truth."""
    from aurora_trl.modeling.tokens import select_seg_hidden_states
    from aurora_trl.trainers.collator import AuroraCollator

    collator = AuroraCollator(processor, model.config.sam_image_size, target="direct", with_masks=True)
    states, extras = [], []
    with torch.no_grad():
        for start in range(0, len(rows), 8):
            batch = collator([rows[i] for i in range(start, min(start + 8, len(rows)))])
            skip = ("labels", "uids", "clip_ids", "gt_masks")
            inputs = {k: v for k, v in batch.items() if k not in skip and not k.startswith("sam_")}
            hidden = model.get_backbone()(**inputs).last_hidden_state
            state, _, _ = select_seg_hidden_states(
                hidden, batch["input_ids"], model.seg_token_id, batch["attention_mask"]
            )
            pixels = batch["sam_pixel_values"]
            embeddings = model.encode_images(pixels.flatten(0, 1)).unflatten(0, pixels.shape[:2])
            states.append(state.float())
            extras += list(zip(embeddings, batch["gt_masks"], batch["sam_input_sizes"], batch["sam_original_sizes"]))
    return torch.cat(states), extras


def spread(values: torch.Tensor) -> str:
    """Per-feature standard deviation over rows, and the mean norm of a row."""
    return f"per-feature std {values.std(0).mean().item():.4f}, norm {values.norm(dim=1).mean().item():.3f}"


def probe_accuracy(features: torch.Tensor, labels: list[str], seed: int = 0) -> tuple[float, float]:
    """`(held-out accuracy, majority rate)` of a linear probe of `labels` from `features`."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    x = features[order]
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    names = sorted(set(labels))
    y = torch.tensor([names.index(labels[i]) for i in order.tolist()])
    cut = len(y) * 3 // 4
    weights = torch.zeros(x.shape[1], len(names), requires_grad=True)
    optimizer = torch.optim.Adam([weights], lr=0.05)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(x[:cut] @ weights, y[:cut]) + 1e-3 * weights.pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = ((x[cut:] @ weights).argmax(1) == y[cut:]).float().mean().item()
    majority = max((y[cut:] == k).float().mean().item() for k in range(len(names)))
    return accuracy, majority


def prompt_sensitivity(model, prompts: torch.Tensor, extras, labels: list[str]) -> tuple[float, float]:
    """`(mean |logit change| / mean |logit|, share of pixels that change side)` when each row's clip is decoded
    under the prompt of the next row that names another class instead of its own (low-resolution logits)."""
    others = []
    for i, label in enumerate(labels):
        following = [j % len(labels) for j in range(i + 1, i + len(labels))]
        others.append(next((j for j in following if labels[j] != label), i))
    change = magnitude = flipped = pixels = 0.0
    with torch.no_grad():
        for start in range(0, len(labels), 8):
            rows = range(start, min(start + 8, len(labels)))
            embeddings = torch.stack([extras[i][0] for i in rows])
            own = model.predict_masks(prompts[list(rows)], image_embeddings=embeddings)
            swapped = model.predict_masks(prompts[[others[i] for i in rows]], image_embeddings=embeddings)
            change += (swapped - own).abs().sum().item()
            magnitude += own.abs().sum().item()
            flipped += ((swapped > 0) != (own > 0)).sum().item()
            pixels += own.numel()
    return change / magnitude, flipped / pixels


def decoder_oracle(model, extras, labels: list[str], steps: int = 300, seed: int = 0) -> float:
    """Held-out IoU of the mask decoder trained alone, prompted by one learned embedding per label (the model's
    decoder is trained in place, then given its weights back, so that each call starts from the model's own)."""
    from aurora_trl.losses import clip_mask_losses
    from aurora_trl.metrics import clip_iou

    torch.manual_seed(seed)
    rng = random.Random(seed)
    names = sorted(set(labels))
    data = [(names.index(label), *extra) for label, extra in zip(labels, extras)]
    cut = len(data) * 3 // 4
    train, held_out = data[:cut], data[cut:]
    prompts = torch.nn.Embedding(len(names), model.config.sam_prompt_dim)
    decoder = list(model.sam.mask_decoder.parameters())
    own_weights = {k: v.clone() for k, v in model.sam.mask_decoder.state_dict().items()}
    optimizer = torch.optim.AdamW([*prompts.parameters(), *decoder], lr=1e-3, weight_decay=0.0)

    def masks(batch):
        return model.predict_masks(
            prompts(torch.tensor([b[0] for b in batch])),
            image_embeddings=torch.stack([b[1] for b in batch]),
            input_sizes=[b[3] for b in batch],
            original_sizes=[b[4] for b in batch],
        )

    for _ in range(steps):
        batch = rng.sample(train, 4)
        bce, dice = clip_mask_losses(masks(batch), [b[2] for b in batch])
        loss = 0.5 * bce + 2.0 * dice
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ious = []
    with torch.no_grad():
        for start in range(0, len(held_out), 8):
            batch = held_out[start : start + 8]
            ious += [clip_iou(m, b[2]) for m, b in zip(masks(batch), batch)]
    model.sam.mask_decoder.load_state_dict(own_weights)
    return sum(ious) / len(ious)


def oracle_labels_by_name(rows, classes: list[str], scenes_path: str | None) -> dict[str, list[str]]:
    """The decoder oracle's labellings of `rows`: the class, and with a synthetic `scenes.jsonl` the target's slot and
    colour and one label for all."""
    labellings = {"one learned prompt per class": classes}
    if scenes_path:
        with open(scenes_path, encoding="utf-8") as f:
            scenes = {scene["vid"]: scene["objects"] for scene in map(json.loads, f)}
        targets = [scenes[row["vid"]][int(row["fid"])] for row in rows]
        labellings["one per slot of the target"] = [t["slot"] for t in targets]
        labellings["one per colour of the target"] = [t["color"] for t in targets]
        labellings["one prompt for all rows"] = ["any"] * len(rows)
    return labellings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an AURORA model folder")
    parser.add_argument("--data", required=True, help="a data set built by `aurora-trl data build`")
    parser.add_argument("--rows", type=int, default=160, help="non-null training rows to read")
    parser.add_argument("--decoder-oracle", action="store_true", help="also train the decoder alone on class prompts")
    parser.add_argument(
        "--scenes", help="synthetic clips' scenes.jsonl: the oracle also tries slot, colour and one-prompt labels"
    )
    args = parser.parse_args()

    from datasets import load_from_disk

    from aurora_trl.modeling import AuroraForSegmentation, load_processor

    model = AuroraForSegmentation.from_pretrained(args.model).eval()
    processor = load_processor(args.model)
    rows = load_from_disk(args.data)["train"].filter(lambda null: not null, input_columns=["is_null"])
    rows = rows.select(range(min(args.rows, len(rows))))
    labels = list(rows["class_name"])
    states, extras = seg_states(model, processor, rows)
    with torch.no_grad():
        prompts = model.project_seg(states)
    accuracy, majority = probe_accuracy(states, labels)
    print(f"[SEG] states of {len(labels)} rows, teacher-forced with their class:")
    print(f"  state:     {spread(states)}")
    print(f"  projected: {spread(prompts)}")
    print(f"  class read back by a linear probe: {accuracy:.2f} held out (majority class {majority:.2f})")
    relative_change, flipped = prompt_sensitivity(model, prompts, extras, labels)
    print(
        f"  masks under another class's prompt: logits change by {relative_change:.1e} of their size, "
        f"{flipped:.1e} of pixels change side"
    )
    if args.decoder_oracle:
        for name, oracle_labels in oracle_labels_by_name(rows, labels, args.scenes).items():
            iou = decoder_oracle(model, extras, oracle_labels)
            print(f"  decoder alone, {name}: held-out IoU {iou:.3f}")


if __name__ == "__main__":
    main()
