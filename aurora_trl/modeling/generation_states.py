"""`[SEG]` states of generated answers, read from the generation pass itself.

An answer's masks are decoded from the final-layer state at its last `[SEG]` (`tokens.select_seg_hidden_states`).
During `generate` the backbone already computes that state: a sampled `[SEG]` is fed back as the next step's
input, and that step's output at its position is the state. [`SegStateRecorder`] keeps those states with a forward
hook on the backbone, and the KV cache generation built. An answer whose last `[SEG]` was never fed (the model wrote
none, and inference appends `It is [SEG].`, or `[SEG]` was the last token sampled) gets only its remaining tokens
forwarded, on top of that cache, at the positions a full forward would give them. No second forward of the prompt
and its ten frames is needed.

A model with sliding-window layers (a window of `w` tokens, counted by cache slot) re-feeds the last `w - 1` kept
tokens of such an answer per sliding layer with its remaining ones, so that no masked slot falls inside a window
that reaches `[SEG]`: the windows then hold the tokens a full forward's do.

The positions follow the Qwen2.5-Omni thinker: `generate` passes the backbone `position_ids` of shape `(4, B, L)`
(text positions, then the three M-RoPE components), and each generated token's position is the previous one + 1.
"""

from collections.abc import Sequence

import torch

from .tokens import multimodal_token_ids


class SegStateRecorder:
    """Record, during one `generate` call of an AURORA model, the backbone's state at every fed `[SEG]` and the KV
    cache; then [`answer_states`] gives the state at each answer's last `[SEG]`.

    Example:

    ```python
    >>> with SegStateRecorder(model) as recorder:
    ...     sequences = model.generate(**inputs)
    >>> answers = [model.mask_answer_ids(row, tokenizer)[0] for row in completions]
    >>> states = recorder.answer_states(completions, answers)  # (B, H), equal to a full forward's
    ```

    Args:
        model: The AURORA model `generate` runs on.
        sharded (`bool`, *optional*, defaults to `False`): The model's weights are sharded across processes
            (DeepSpeed ZeRO-3, FSDP). Every process then runs [`answer_states`]'s forward, even one whose answers
            all wrote their `[SEG]` during generation: each forward gathers the weights from all processes, and a
            process that skipped it would leave the others waiting.
    """

    def __init__(self, model, sharded: bool = False):
        self.model = model
        self.sharded = sharded
        self.backbone = model.get_backbone()
        self.seg_token_id = model.seg_token_id
        self.refeed = refed_tokens(model.config.get_text_config())
        self._media_ids = set(multimodal_token_ids(model.config)) if self.refeed else set()
        self._hook = None
        self._prefill = None  # (prompt ids (B, P), prompt attention mask (B, P), last prompt positions (3, B))
        self._cache = None
        self._fed_steps = 0  # generated tokens fed back (the last one sampled never is)
        # each row's state at the latest `[SEG]` it was fed, and that token's completion index (-1: none yet), kept
        # on the device without a sync per step
        self._latest_state = None
        self._latest_index = None

    def __enter__(self):
        self._hook = self.backbone.register_forward_hook(self._record, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self._hook.remove()

    def _record(self, module, args, kwargs, output):
        input_ids = kwargs.get("input_ids")
        if self._prefill is None:
            positions, mask = kwargs.get("position_ids"), kwargs.get("attention_mask")
            if positions is None or input_ids is None or not (mask is None or torch.is_tensor(mask)):
                raise RuntimeError(
                    "SegStateRecorder needs the backbone called with input_ids, position_ids and a 2-D attention mask "
                    "or none (as the Qwen2.5-Omni thinker's generate does)"
                )
            if mask is None:  # generate drops the mask of an unpadded batch
                mask = torch.ones_like(input_ids)
            self._prefill = (input_ids, mask, positions[-3:, :, -1])
        else:
            hidden = output.last_hidden_state[:, -1]
            if self._latest_state is None:
                self._latest_state = torch.zeros_like(hidden)
                self._latest_index = torch.full((hidden.shape[0],), -1, dtype=torch.long, device=hidden.device)
            fed_seg = input_ids[:, -1] == self.seg_token_id
            self._latest_state = torch.where(fed_seg[:, None], hidden, self._latest_state)
            self._latest_index = torch.where(fed_seg, self._fed_steps, self._latest_index)
            self._fed_steps += 1
        self._cache = output.past_key_values

    @torch.no_grad()
    def answer_states(self, completions: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> torch.Tensor:
        """The final-layer state at the last `[SEG]` of each answer `(B, H)`. Call it once, after `generate`, with
        gradient checkpointing off: in training mode, transformers' checkpointed layers ignore the KV cache the
        answers' remaining tokens are forwarded on.

        Args:
            completions: The generated ids of each row (the completion as `generate` wrote it, cut after its end of
                turn or not).
            answers: The ids the masks are decoded from, each holding `[SEG]` (`mask_answer_ids`: the completion
                without its end of turn, with `It is [SEG].` appended where it has no `[SEG]`).
        """
        if self._prefill is None:
            raise RuntimeError("answer_states needs a generate call inside the recorder's `with` block")
        states, pending = [None] * len(answers), []
        latest = self._latest_index.tolist() if self._latest_index is not None else [-1] * len(answers)
        for row, (completion, answer) in enumerate(zip(completions, answers)):
            cached = _common_prefix(completion[: self._fed_steps], answer)
            last_seg = max(i for i, token in enumerate(answer) if token == self.seg_token_id)
            # the fed tokens after a row's end of turn are padding, so its latest fed `[SEG]` is its answer's last
            if last_seg < cached and latest[row] == last_seg:
                states[row] = self._latest_state[row]
            else:
                pending.append((row, cached, list(answer), last_seg))
        if pending:
            for (row, *_), state in zip(pending, self._forward_remainders(pending)):
                states[row] = state
        elif self.sharded:  # join the other processes' forward: one pad token of the first row, result unused
            self._forward_remainders([(0, 0, [self._pad_id()], 0)])
        return torch.stack(states)

    def _pad_id(self) -> int:
        return self.model.generation_config.pad_token_id or 0

    def _forward_remainders(self, pending: list[tuple[int, int, list[int], int]]) -> list[torch.Tensor]:
        """Forward each pending row's uncached answer tokens on top of the generation cache, masking the cached
        slots its answer does not hold (its end of turn, the padding after it). With sliding-window layers, the
        last `self.refeed` cached tokens before them (answer tokens, then the prompt's closing text) are forwarded
        again and their cached copies masked. Each pending entry is `(row, cached answer tokens, answer, index of
        its last [SEG])`."""
        _, prompt_mask, last_positions = self._prefill
        cached = None if self._cache is None else self._cache.get_seq_length()
        if cached != prompt_mask.shape[1] + self._fed_steps:
            raise RuntimeError(
                f"generation kept a KV cache of {cached} positions for {prompt_mask.shape[1]} prompt and "
                f"{self._fed_steps} fed tokens: generate with use_cache=True (and gradient checkpointing off)"
            )
        device = prompt_mask.device
        rows = torch.tensor([row for row, *_ in pending], device=device)
        kept_prompt, fed_mask, forwarded, offsets, indices = prompt_mask[rows].clone(), [], [], [], []
        for i, (row, cached, answer, last_seg) in enumerate(pending):
            from_answer = min(self.refeed, cached)
            from_prompt = self.refeed - from_answer
            head = self._prompt_tail(row, from_prompt)
            if from_prompt:
                kept_prompt[i, -from_prompt:] = 0
            forwarded.append(head + list(answer[cached - from_answer :]))
            fed_mask.append([1] * (cached - from_answer) + [0] * (self._fed_steps - cached + from_answer))
            offsets.append(cached - self.refeed)  # the first forwarded token's place after the prompt's last
            indices.append(self.refeed + last_seg - cached)
        length = max(len(tokens) for tokens in forwarded)
        input_ids = torch.full((len(pending), length), self._pad_id(), dtype=torch.long, device=device)
        new_mask = torch.zeros_like(input_ids)
        for i, tokens in enumerate(forwarded):
            input_ids[i, : len(tokens)] = torch.tensor(tokens, device=device)
            new_mask[i, : len(tokens)] = 1
        fed = torch.tensor(fed_mask, dtype=prompt_mask.dtype, device=device).reshape(len(pending), self._fed_steps)
        attention_mask = torch.cat([kept_prompt, fed, new_mask.to(prompt_mask.dtype)], dim=1)
        steps = torch.arange(length, device=device)
        offsets = torch.tensor(offsets, device=device)
        positions = last_positions[:, rows, None] + 1 + offsets[None, :, None] + steps[None, None, :]
        self._cache.batch_select_indices(rows)
        hidden = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
        ).last_hidden_state
        return [hidden[i, index] for i, index in enumerate(indices)]

    def _prompt_tail(self, row: int, count: int) -> list[int]:
        """The last `count` prompt tokens of `row`: text that follows the media (its positions then step by one), as
        the chat template's closing `<|im_end|>`, `<|im_start|>assistant` always is."""
        if not count:
            return []
        prompt_ids, prompt_mask, _ = self._prefill
        tail = prompt_ids[row, -count:].tolist()
        if not bool(prompt_mask[row, -count:].all()) or self._media_ids.intersection(tail):
            raise RuntimeError(
                f"the prompt's last {count} tokens must be text, left-padded: re-forwarding them keeps the "
                "sliding-window layers' [SEG] state exact"
            )
        return tail


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def refed_tokens(text_config) -> int:
    """How many kept answer tokens [`SegStateRecorder`] forwards again for an answer continued on the cache: none
    without sliding-window layers; `window - 1` per sliding layer with them, which makes the `[SEG]` state exact when
    the sliding layers are the top ones (as Qwen2's `max_window_layers` places them)."""
    layer_types = list(getattr(text_config, "layer_types", None) or [])
    if "sliding_attention" not in layer_types:
        return 0
    first = layer_types.index("sliding_attention")
    if "full_attention" in layer_types[first:]:
        raise ValueError(
            "[SEG] states from generation need the sliding-window layers on top of the full-attention ones, got "
            f"layer_types={layer_types}"
        )
    return (text_config.sliding_window - 1) * (len(layer_types) - first)
