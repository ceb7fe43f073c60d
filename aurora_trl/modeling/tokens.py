"""The token conventions of an AURORA model: `[SEG]` (adding it, and which hidden state stands for it), the
multimodal markers generation must never sample, and where generation stops.

**One `[SEG]` convention** (AURORA's code uses the state *at* `[SEG]` in SFT and inference but the state *before*
it in GRPO; this package uses one everywhere): the final-layer (post-norm) hidden state **at the last `[SEG]`
token** of each sequence. Fallback when a sequence has no `[SEG]`: the state at its **last attended token**.
[`select_seg_hidden_states`] implements it and reports which rows fell back.
"""

from collections.abc import Sequence

import torch

from ..text import SEG_TOKEN


def add_seg_token(tokenizer) -> int:
    """Add `[SEG]` to `tokenizer` as a normal added token (idempotent) and return its id.

    Not a special token: TRL decodes completions with `skip_special_tokens=True`, which would strip a special
    `[SEG]` from the text the format reward reads.
    """
    if SEG_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([SEG_TOKEN])
    return tokenizer.convert_tokens_to_ids(SEG_TOKEN)


def stop_at_end_of_turn(generation_config, tokenizer) -> None:
    """Make generation stop at the tokenizer's end of turn (and pad with its pad token) where the generation config
    names none: a Qwen2.5-Omni checkpoint saved by transformers 5 has no `eos_token_id` in `generation_config.json`,
    and without one `generate` runs to `max_new_tokens`, keeping whatever follows the turn."""
    if generation_config.eos_token_id is None and tokenizer.eos_token_id is not None:
        generation_config.eos_token_id = tokenizer.eos_token_id
    if generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id


def select_seg_hidden_states(
    hidden_states: torch.Tensor | Sequence[torch.Tensor],
    input_ids: torch.LongTensor,
    seg_token_id: int,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.BoolTensor, torch.LongTensor]:
    """The hidden state that stands for `[SEG]` in each sequence (the package's one convention).

    Args:
        hidden_states (`torch.Tensor` of shape `(B, L, H)`, or the tuple of all layers):
            Final-layer states: the backbone's `last_hidden_state`, or `outputs.hidden_states` (its last element is
            used).
        input_ids (`torch.LongTensor` of shape `(B, L)`):
            The tokens the states belong to (prompt + completion).
        seg_token_id (`int`):
            Id of `[SEG]`.
        attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*):
            Padding mask; padded positions are never selected.

    Returns:
        `tuple`: `(states, found, positions)`. `states` (`(B, H)`) is the state at the **last** `[SEG]` of each row,
        or, where a row has none (`found[b]` is `False`), at its last attended token; `positions` are the
        selected indices.
    """
    if isinstance(hidden_states, (tuple, list)):
        hidden_states = hidden_states[-1]
    batch, length = input_ids.shape
    index = torch.arange(length, device=input_ids.device).expand(batch, length)
    attended = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    is_seg = (input_ids == seg_token_id) & attended
    last_seg = torch.where(is_seg, index, -1).amax(dim=1)
    last_attended = torch.where(attended, index, -1).amax(dim=1).clamp(min=0)
    found = last_seg >= 0
    positions = torch.where(found, last_seg, last_attended)
    rows = torch.arange(batch, device=input_ids.device)
    return hidden_states[rows, positions], found, positions


def multimodal_token_ids(config) -> list[int]:
    """Ids of the backbone's multimodal placeholder and marker tokens.

    A sampled marker breaks the next forward (mismatched image/audio placeholders), so generation must suppress
    all of them (`generate(..., suppress_tokens=...)`; TRL suppresses only the image token).
    """
    names = (
        "image_token_id",
        "video_token_id",
        "audio_token_id",
        "vision_start_token_id",
        "vision_end_token_id",
        "audio_start_token_id",
        "audio_end_token_id",
    )
    ids = [getattr(config, name, None) for name in names]
    return sorted({i for i in ids if isinstance(i, int) and i >= 0})


# Labels that the loss skips (the prompt of a teacher-forced row, and padding): the transformers convention.
IGNORE_INDEX = -100


def response_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a response: its text, then the end of turn."""
    return tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]


def pad_sequences(rows: Sequence[torch.Tensor], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """1-D token rows as one `(B, longest)` batch and its attention mask, padded with `pad_id` on `side` ("right"
    for teacher-forced training rows, "left" for generation, which appends on the right)."""
    length = max(len(row) for row in rows)
    batch = rows[0].new_full((len(rows), length), pad_id)
    mask = torch.zeros_like(batch)
    for b, row in enumerate(rows):
        span = slice(0, len(row)) if side == "right" else slice(length - len(row), length)
        batch[b, span] = row
        mask[b, span] = 1
    return batch, mask
