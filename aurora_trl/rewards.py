"""Reward functions for GRPO (Stage 3), with TRL's signature: `f(completions, **kwargs) -> list[float | None]`.

Each function takes the completions as plain strings or as conversations (`[{"role": "assistant", "content": ...}]`),
reads the data-set columns it needs from its keyword arguments, ignores the rest, and returns one value per
completion (`None` where it does not apply). They work with TRL's own GRPOTrainer too; `REWARD_FUNCS` maps recipe
names to them. AURORA's reward is format + class + IoU, weight 1 each.
"""

import math
import re

from aurora_trl.text import (
    ANSWER_SUFFIX,
    SEG_TOKEN,
    count_reasoned_steps,
    is_class_phrase,
    names_class,
    parse_answer_class,
)


# End-of-turn markers a decoded completion may still carry (Qwen, Llama, GPT-2 style).
_END_OF_TURN = re.compile(r"<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>|</s>")


def completion_text(completion) -> str:
    """The text of a completion given as a string or as a conversation (its last message's content).

    Anything that is not text (a non-string content or block text, a malformed message) reads as "": a reward
    function must score every completion a policy can produce, not stop the run on one odd sample.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else ""
        if isinstance(content, list):  # content blocks
            return "".join(_text(b.get("text")) for b in content if isinstance(b, dict))
        return _text(content)
    return ""


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _per_completion(values, completions, name: str) -> list:
    """A data-set column as one value per completion; a scalar applies to all.

    A column of another length would pair rewards with the wrong completions (zip stops silently), so it raises.
    """
    if not isinstance(values, (list, tuple)):
        return [values] * len(completions)
    if len(values) != len(completions):
        raise ValueError(f"{name} has {len(values)} values for {len(completions)} completions")
    return list(values)


def answer_text(completion) -> str:
    """The answer a completion gives: its text up to the first end-of-turn marker, without surrounding white space.

    What follows the end of the turn is not part of the answer (a model reads it as the next turn), so it earns
    nothing: `"… <|im_end|> Step 1 … It is [SEG]."` answers with the text before the marker.
    """
    return _END_OF_TURN.split(completion_text(completion), maxsplit=1)[0].strip()


def format_reward(completions, completion_ids=None, seg_token_id=None, **kwargs) -> list[float]:
    """1.0 when the answer ends with `It is [SEG].` and holds exactly one `[SEG]`, which is the real `[SEG]` token.

    The single-`[SEG]` rule closes a hack AURORA's check leaves open: repeating the suffix, or `[SEG]` spam. The
    token check closes another: `[SEG]` spelled with ordinary sub-tokens decodes to the same text, but no mask is
    read there. It needs the completions' token ids (`completion_ids`, which TRL passes, cut after the end of turn)
    and the `[SEG]` token id (`seg_token_id`, a column [`~aurora_trl.trainers.AuroraGRPOTrainer`] adds, or one id
    for all); without them only the text is checked. A `seg_token_id` or `completion_ids` list of another length
    than `completions` raises `ValueError`.
    """
    texts = [answer_text(c) for c in completions]
    rewards = [float(text.endswith(ANSWER_SUFFIX) and text.count(SEG_TOKEN) == 1) for text in texts]
    if completion_ids is None or seg_token_id is None:
        return rewards
    ids = _per_completion(completion_ids, completions, "completion_ids")
    seg_ids = _per_completion(seg_token_id, completions, "seg_token_id")
    return [reward * float(_count(row, seg) == 1) for reward, row, seg in zip(rewards, ids, seg_ids)]


def _count(ids, token) -> int:
    """How often `token` is among `ids`; ids that are not a sequence count as none (they confirm nothing)."""
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        return 0
    return sum(1 for i in ids if i == token)


def class_reward(completions, class_name=None, **kwargs) -> list[float | None]:
    """AURORA's class reward, 0-2: +1 for a `the target is …` phrase that names a class, +1 more when it names
    `class_name`.

    The last such phrase counts; names are compared after normalisation (case, quotes, a leading article, and
    spaces, underscores and hyphens alike). A phrase names a class when [`~aurora_trl.text.is_class_phrase`] says so
    (`The target is the.` does not). For null rows "null", "none", "nothing" and "no object" name the class.
    `None` for a row without a class (`class_name` absent, None or not a string). A `class_name` list of another
    length than `completions` raises `ValueError`.
    """
    rewards = []
    for completion, truth in zip(completions, _per_completion(class_name, completions, "class_name")):
        if not isinstance(truth, str):  # None, or a missing value read as NaN from a pandas-backed column
            rewards.append(None)
            continue
        named = parse_answer_class(answer_text(completion))
        rewards.append(1.0 + float(names_class(named, truth)) if is_class_phrase(named) else 0.0)
    return rewards


def reasoning_reward(completions, **kwargs) -> list[float]:
    """0.25 for each of the four CoT steps the answer carries in order, each with content (`Step 1 …`, `Step1:`,
    `**Step 1**`, ...): [`~aurora_trl.text.count_reasoned_steps`], on the path after a reflective answer's last
    "Wait, let me reconsider"."""
    return [0.25 * count_reasoned_steps(answer_text(c)) for c in completions]


def iou_reward(completions, iou=None, **kwargs) -> list[float | None]:
    """The mask IoU the trainer computed for each completion (`aurora_trl.metrics.clip_iou`, threshold 0.5:
    mean over frames, an empty ground-truth frame scoring its true-negative share), in [0, 1].

    `None` when not computed, and for a value that is not an IoU (not a number, non-finite, outside [0, 1]): masks
    that went NaN must not reach the advantages, so such a value counts as not applicable. An `iou` list of another
    length than `completions` raises `ValueError`.
    """
    if iou is None:
        return [None] * len(completions)
    if hasattr(iou, "tolist"):  # a tensor or array column
        iou = iou.tolist()
    return [_as_iou(v) for v in _per_completion(iou, completions, "iou")]


def _as_iou(value) -> float | None:
    if isinstance(value, (str, bytes)):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


REWARD_FUNCS = {
    "format": format_reward,
    "class": class_reward,
    "reasoning": reasoning_reward,
    "iou": iou_reward,
}
