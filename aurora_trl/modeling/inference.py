"""The inference pipeline of an AURORA model: a clip and an expression in, the reasoning and masks out.

[`AuroraInferenceMixin.segment`] (one clip) and [`AuroraInferenceMixin.segment_batch`] (several, in one batch) build
the prompt with `aurora_trl.text.build_prompt` (the one prompt template of training and inference), generate the
answer greedily, read it as AURORA's inference does (`It is [SEG].` appended when the model wrote no `[SEG]`:
[`AuroraInferenceMixin.mask_answer_ids`], which the GRPO rollouts read answers through too), and decode the masks
from the answer's `[SEG]` state.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from aurora_trl.data_row import SAMPLE_RATE
from aurora_trl.text import ANSWER_SUFFIX, MAX_ANSWER_TOKENS, build_prompt

from .processing import load_processor
from .sam import preprocess_frames
from .tokens import multimodal_token_ids, pad_sequences


@dataclass
class SegmentationOutput(ModelOutput):
    """Output of [`AuroraSegmentationMixin.segment`].

    Args:
        text (`str`): The decoded answer (reasoning), with `It is [SEG].` appended when the model emitted no `[SEG]`.
        mask_logits (`torch.Tensor` of shape `(T, H, W)`): Mask logits at the frames' size (`> 0` = foreground).
        seg_emitted (`bool`): Whether the model generated `[SEG]` itself.
        sequences (`torch.LongTensor` of shape `(1, L)`): Prompt + answer ids the masks were decoded from.
    """

    text: str | None = None
    mask_logits: torch.Tensor | None = None
    seg_emitted: bool | None = None
    sequences: torch.LongTensor | None = None


class AuroraInferenceMixin:
    """`segment`, `segment_batch` and the helpers they share; mixed into [`AuroraSegmentationMixin`], whose
    `generate`, `seg_embeddings` and `predict_masks` they call."""

    @torch.no_grad()
    def segment(
        self,
        frames: Sequence,
        audio=None,
        expression: str = "",
        processor=None,
        max_new_tokens: int = MAX_ANSWER_TOKENS,
        sampling_rate: int = SAMPLE_RATE,
        **generate_kwargs,
    ) -> SegmentationOutput:
        """Reason about a clip and segment the referred object in every frame (greedy decoding).

        Args:
            frames (`Sequence[PIL.Image.Image]`):
                The T frames of the clip (all the same size).
            audio (`np.ndarray`, *optional*):
                Mono waveform at `sampling_rate` (16 kHz for the Omni feature extractor); `None` for no audio.
            expression (`str`):
                The referring expression.
            processor (*optional*):
                The model's processor; loaded from `config._name_or_path` when omitted.
            max_new_tokens (`int`, *optional*, defaults to `2048`):
                Length limit of the answer (AURORA's); generation stops earlier at the end of turn.
            sampling_rate (`int`, *optional*, defaults to `16000`):
                Sampling rate of `audio`.
            **generate_kwargs:
                Further `generate` arguments (e.g. `sequence_bias`); decoding stays greedy.

        Returns:
            [`SegmentationOutput`]: the answer text and `(T, H, W)` mask logits at the frames' size. As in AURORA,
            `It is [SEG].` is appended to the answer when the model emitted no `[SEG]`, and the masks are decoded
            from that appended token.
        """
        clip = (frames, audio, expression)
        return self.segment_batch([clip], processor, max_new_tokens, sampling_rate, **generate_kwargs)[0]

    @torch.no_grad()
    def segment_batch(
        self,
        clips: Sequence[tuple],
        processor=None,
        max_new_tokens: int = MAX_ANSWER_TOKENS,
        sampling_rate: int = SAMPLE_RATE,
        **generate_kwargs,
    ) -> list[SegmentationOutput]:
        """[`segment`] for several clips at once: one batched `generate` (prompts left-padded), one batched
        forward for the `[SEG]` states, one batched SAM decode.

        Args:
            clips (`Sequence[tuple]`):
                `(frames, audio, expression)` per clip; frame sizes may differ between clips, and either every clip
                has audio or none has (the prompt differs).

        Returns:
            `list[SegmentationOutput]`, one per clip, as [`segment`] returns.
        """
        if not clips:
            return []
        if len({audio is None for _, audio, _ in clips}) > 1:
            raise ValueError("segment_batch: either every clip has audio or none has; split the batch")
        if processor is None:
            processor = load_processor(self.config._name_or_path)
        tokenizer = processor.tokenizer
        inputs = self.prepare_batch_inputs(processor, clips, sampling_rate)
        prompt_length = inputs["input_ids"].shape[1]
        generated = self.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            suppress_tokens=multimodal_token_ids(self.config),
            **generate_kwargs,
        )
        read = [self.mask_answer_ids(row, tokenizer) for row in generated[:, prompt_length:].tolist()]
        answers, emitted = [answer for answer, _ in read], [seg_emitted for _, seg_emitted in read]
        sequences, attention_mask = left_padded_with_answers(
            inputs["input_ids"], inputs["attention_mask"], answers, tokenizer.pad_token_id
        )
        forward_inputs = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        # The backbone gives the final-layer states without computing the full-vocabulary logits.
        hidden = self.get_backbone()(input_ids=sequences, attention_mask=attention_mask, **forward_inputs)
        seg, _ = self.seg_embeddings(hidden.last_hidden_state, sequences, attention_mask)
        sam_frames = [preprocess_frames(frames, self.config.sam_image_size) for frames, _, _ in clips]
        masks = self.predict_masks(
            seg,
            pixel_values=torch.stack([f.pixel_values for f in sam_frames]).to(seg.device),
            input_sizes=[f.input_size for f in sam_frames],
            original_sizes=[f.original_size for f in sam_frames],
        )
        return [
            SegmentationOutput(
                text=tokenizer.decode(answer, skip_special_tokens=True),
                mask_logits=mask,
                seg_emitted=seg_emitted,
                sequences=row[row_mask.bool()][None],
            )
            for answer, mask, seg_emitted, row, row_mask in zip(answers, masks, emitted, sequences, attention_mask)
        ]

    def mask_answer_ids(self, answer_ids: Sequence[int], tokenizer) -> tuple[list[int], bool]:
        """The answer tokens the masks of a generated answer are decoded from, and whether the model emitted `[SEG]`.

        End-of-turn and padding tokens are dropped (the answer must end with the text its masks come from), and an
        answer without `[SEG]` gets `It is [SEG].` appended, as AURORA's inference does. Inference
        ([`segment_batch`]) and the GRPO rollouts' IoU reward both read answers through this, so a rollout is
        scored on the mask that inference would give it.
        """
        stop = {tokenizer.pad_token_id, tokenizer.eos_token_id, *_as_list(self.generation_config.eos_token_id)}
        keep = [i for i in answer_ids if i not in stop]
        if self.seg_token_id in keep:
            return keep, True
        text = tokenizer.decode(keep, skip_special_tokens=True)
        suffix = (" " if text and not text.endswith(" ") else "") + ANSWER_SUFFIX
        return keep + tokenizer(suffix, add_special_tokens=False)["input_ids"], False

    def prepare_inputs(self, processor, frames, audio, expression: str, sampling_rate: int = SAMPLE_RATE) -> dict:
        """Processor inputs of one clip's prompt (the package's single prompt template, `text.build_prompt`)."""
        return self.prepare_batch_inputs(processor, [(frames, audio, expression)], sampling_rate)

    def prepare_batch_inputs(self, processor, clips: Sequence[tuple], sampling_rate: int = SAMPLE_RATE) -> dict:
        """Processor inputs of several clips' prompts, left-padded for generation."""
        texts, kwargs = [], {}
        for frames, audio, expression in clips:
            messages = build_prompt(expression, num_frames=len(frames), with_audio=audio is not None)
            kwargs.setdefault("images", []).extend(frames)
            if audio is not None:
                kwargs.setdefault("audio", []).append(audio)
                kwargs["sampling_rate"] = sampling_rate
            texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        side = processor.tokenizer.padding_side
        processor.tokenizer.padding_side = "left"  # generation appends on the right
        try:
            inputs = processor(text=texts, return_tensors="pt", padding=True, **kwargs)
        finally:
            processor.tokenizer.padding_side = side
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def left_padded_with_answers(
    input_ids: torch.LongTensor, attention_mask: torch.Tensor, answers: list[list[int]], pad_id: int
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Each row's attended prompt tokens followed by its answer, left-padded again into one batch (so the last
    position of every row is its answer's last token, as in training)."""
    rows = [
        torch.cat([ids[mask.bool()], torch.tensor(answer, dtype=ids.dtype, device=ids.device)])
        for ids, mask, answer in zip(input_ids, attention_mask, answers)
    ]
    return pad_sequences(rows, pad_id, side="left")
