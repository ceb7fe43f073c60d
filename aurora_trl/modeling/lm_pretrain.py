"""Text-only pretraining of a tiny language model: the language a real AURORA model's LLM comes with.

A real model starts from Qwen2.5-Omni, which reads its prompt: it can quote the reference and name, in Step 4, the
object that its Step 3 settled on. A tiny model built at random cannot, and the stages do not teach it within their
budget: after the tiny Stage-1 recipe (120 steps of 2 rows) the next word after "Step 3 (reference):" (a copy of
the reference's key words) is right on 17 % of held-out rows, and the class after "The target is" (the object Step 3
named nine words earlier) on 19 %: the answers are the same for every clip.

This module gives the tiny language model that skill the way a language model learns it: next-token prediction on
text alone, here each training row's prompt without its frames and audio (the system message and the reference, in
the chat template) followed by its Stage-1 answer. Without the 290 media tokens a step is cheap: 300 steps of 32
rows take about 50 s on 2 CPU cores. Only the language model (its embeddings, layers and LM head) trains; the towers,
the projector and SAM are untouched. [`pretrain_language_model`] reports the held-out token accuracy of the answers
and of the class that each names, before and after.
"""

import random
import time
from dataclasses import dataclass

import torch

from aurora_trl.modeling.policy import trainable
from aurora_trl.modeling.tokens import IGNORE_INDEX, pad_sequences, response_ids
from aurora_trl.text import answer_start, build_prompt, target_text


# Steps of 32 rows: about 50 s on 2 CPU cores for the quickstart's tiny model, after which it names the class its
# Step 3 named on 98 % of the held-out rows of the quickstart's data (after the Stage-1 recipe alone: 19 %).
LM_PRETRAINING_STEPS = 300


@dataclass
class TextExample:
    """One row's text-only example: its prompt's and its answer's token ids, and where the answer names its class."""

    prompt_ids: list[int]
    response_ids: list[int]
    answer_index: int | None  # index in `response_ids` of the class's first token; None when none is named


def response_token_index(tokenizer, answer: str, offset: int) -> int:
    """Index in `response_ids(tokenizer, answer)` of the token that begins at character `offset` of `answer` (a word
    start): the number of tokens before it, counted without the space, which belongs to the word's first token."""
    return len(response_ids(tokenizer, answer[:offset].rstrip())) - 1  # less the end-of-turn token


def text_examples(processor, rows) -> list[TextExample]:
    """The examples of every row with a Stage-1 answer (`reasoning`); the prompt is [`build_prompt`] without media,
    in the processor's chat template, as the stages write it."""
    tokenizer = processor.tokenizer
    examples = []
    for row in rows:
        if not row.get("reasoning"):
            continue
        prompt = build_prompt(row["expression"], num_frames=0, with_audio=False)
        text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        answer = target_text(row, "reasoning")
        start = answer_start(answer)
        index = None if start is None else response_token_index(tokenizer, answer, start)
        examples.append(
            TextExample(tokenizer(text, add_special_tokens=False)["input_ids"], response_ids(tokenizer, answer), index)
        )
    return examples


def text_batch(examples: list[TextExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded prompt+answer rows with labels on the answers only."""
    sequences = [torch.tensor(e.prompt_ids + e.response_ids) for e in examples]
    labels = [torch.tensor([IGNORE_INDEX] * len(e.prompt_ids) + e.response_ids) for e in examples]
    input_ids, attention_mask = pad_sequences(sequences, pad_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": pad_sequences(labels, IGNORE_INDEX)[0]}


def answer_accuracy(model, examples: list[TextExample], pad_id: int, batch_size: int = 32) -> dict[str, float]:
    """Teacher-forced accuracy of the greedy next token on `examples`: over every answer token, and on the first
    token of the class each answer names."""
    right = total = class_right = class_total = 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            batch = text_batch(chunk, pad_id)
            predicted = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
            # the prediction at position i is for the token at i + 1
            hits = predicted[:, :-1] == batch["labels"][:, 1:]
            answer = batch["labels"][:, 1:] != IGNORE_INDEX
            right += (hits & answer).sum().item()
            total += answer.sum().item()
            for row, e in enumerate(chunk):
                if e.answer_index is not None:
                    class_total += 1
                    class_right += hits[row, len(e.prompt_ids) + e.answer_index - 1].item()
    return {"token_accuracy": right / max(total, 1), "class_accuracy": class_right / max(class_total, 1)}


def language_model_parameters(model) -> list[torch.nn.Parameter]:
    """The language model's weights: the backbone's `language_model` (embeddings, layers, final norm) and the head."""
    return [*model.get_backbone().language_model.parameters(), *model.get_output_embeddings().parameters()]


def pretrain_language_model(
    model,
    processor,
    dataset,
    steps: int = LM_PRETRAINING_STEPS,
    learning_rate: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    train_split: str = "train",
    eval_split: str = "val",
) -> dict[str, float]:
    """Train `model`'s language model in place on the text of `dataset[train_split]` (each row's prompt without
    media, then its Stage-1 answer); returns [`answer_accuracy`] on `dataset[eval_split]` before and after, the rows
    and the seconds taken.

    Args:
        model ([`AuroraForSegmentation`]):
            A model whose language model is to be pretrained (e.g. a fresh tiny one). Its towers, projector and SAM
            are not touched.
        processor: The model's processor (its tokenizer and chat template).
        dataset (`datasets.DatasetDict`):
            A data set built by `aurora-trl data build` with Stage-1 answers; rows without one are left out.
        steps, learning_rate, batch_size (*optional*):
            AdamW steps on random batches of rows ([`LM_PRETRAINING_STEPS`] by default).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the batches.
    """
    start = time.perf_counter()
    pad_id = processor.tokenizer.pad_token_id
    media_free = [c for c in dataset[train_split].column_names if c not in ("images", "audio", "masks")]
    train = text_examples(processor, dataset[train_split].select_columns(media_free))
    held_out = []
    if eval_split in dataset:
        held_out = text_examples(processor, dataset[eval_split].select_columns(media_free))
    if len(train) < batch_size:
        raise ValueError(
            f"{len(train)} rows of {train_split!r} have a Stage-1 answer (`reasoning`): too few to pretrain the "
            f"language model in batches of {batch_size}"
        )
    was_training = model.training
    model.eval()
    report = {f"before_{k}": v for k, v in answer_accuracy(model, held_out, pad_id).items()} if held_out else {}
    parameters = language_model_parameters(model)
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    rng = random.Random(seed)
    model.train()
    with trainable(parameters):
        for _ in range(steps):
            loss = model(**text_batch(rng.sample(train, batch_size), pad_id)).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    if held_out:
        report.update(answer_accuracy(model, held_out, pad_id))
    model.train(was_training)
    return {**report, "rows": len(train), "seconds": time.perf_counter() - start}
