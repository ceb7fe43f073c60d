"""Batches for the supervised stages: token ids with response-only labels, the Omni processor's image and audio
tensors, SAM's frames, the ground-truth masks, and (for distillation) the teacher's token ids.

A row is one data-set example (`aurora_trl/data_row.py`); its prompt is `aurora_trl.text.build_prompt` of its
expression, as at inference. The prompt is expanded by the processor alone (its image and audio placeholders become
as many tokens as the features need), then the response tokens are appended, so the labels mark the response
exactly, with no re-tokenisation of a joined string. [`sequence_length`] gives the length of that sequence without
processing any pixel or sample, so rows too long for `max_length` can be reported before training rather than cut.
"""

from dataclasses import dataclass

import torch

from aurora_trl.data_row import annotated_frames, clip_id, decode_audio, mask_tensor
from aurora_trl.modeling.processing import media_token_count, prompt_inputs
from aurora_trl.modeling.sam import preprocess_frames
from aurora_trl.modeling.tokens import IGNORE_INDEX, pad_sequences, response_ids
from aurora_trl.text import build_prompt, target_text, teacher_target


def sequence_length(processor, row: dict, target: str, image_sizes, audio_samples: int) -> int:
    """Tokens of the sequence [`AuroraCollator`] builds for `row` (the prompt as the processor expands it, then the
    response), from the frames' `(height, width)` and the audio's length alone."""
    prompt = build_prompt(row["expression"], num_frames=len(image_sizes))
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    placeholders = (processor.image_token, processor.audio_token)
    placeholder_ids = set(processor.tokenizer.convert_tokens_to_ids(list(placeholders)))
    plain = sum(1 for i in processor.tokenizer(text)["input_ids"] if i not in placeholder_ids)
    multimodal = media_token_count(processor, image_sizes, audio_samples)
    return plain + multimodal + len(response_ids(processor.tokenizer, target_text(row, target)))


@dataclass
class AuroraCollator:
    """Collate data-set rows for [`AuroraSFTTrainer`] (and for teacher-forced evaluation).

    Args:
        processor: The model's Omni processor (tokenizer with `[SEG]`, image processor, feature extractor).
        sam_image_size (`int`): SAM input size of the model (`config.sam_image_size`).
        target (`str`, *optional*, defaults to `"reasoning"`): `direct`, `reasoning` or `reflective`.
        with_teacher (`bool`, *optional*, defaults to `False`): Also build the distillation teacher's ids (the
            prompt followed by `It is {class} [SEG].`).
        with_masks (`bool`, *optional*, defaults to `True`): Also build SAM's frames and the ground-truth masks
            (`False`: the language-model inputs only).
    """

    processor: object
    sam_image_size: int
    target: str = "reasoning"
    with_teacher: bool = False
    with_masks: bool = True

    def __call__(self, rows: list[dict]) -> dict:
        tokenizer = self.processor.tokenizer
        sequences, teacher_sequences, multimodal = [], [], []
        sam_pixels, input_sizes, original_sizes, gt_masks, annotated = [], [], [], [], []
        for row in rows:
            frames = [img.convert("RGB") for img in row["images"]]
            encoded = prompt_inputs(self.processor, row, frames, decode_audio(row["audio"]))
            prompt_ids = encoded.pop("input_ids")[0]
            encoded.pop("attention_mask")
            multimodal.append(encoded)
            sequences.append((prompt_ids, self._response_ids(target_text(row, self.target))))
            if self.with_teacher:
                teacher_sequences.append((prompt_ids, self._response_ids(teacher_target(row["class_name"]))))
            if self.with_masks:
                sam = preprocess_frames(frames, self.sam_image_size)
                sam_pixels.append(sam.pixel_values)
                input_sizes.append(sam.input_size)
                original_sizes.append(sam.original_size)
                gt_masks.append(mask_tensor(row["masks"]))
                annotated.append(annotated_frames(row, len(frames)))

        batch = self._pad(sequences, tokenizer.pad_token_id)
        # what the trainer's caches key by: the row (teacher embeddings) and its clip (SAM image embeddings)
        batch["uids"] = [row.get("uid") for row in rows]
        batch["clip_ids"] = [clip_id(row) for row in rows]
        for key in multimodal[0]:
            batch[key] = torch.cat([m[key] for m in multimodal])
        if self.with_teacher:
            teacher = self._pad(teacher_sequences, tokenizer.pad_token_id)
            batch["teacher_input_ids"] = teacher["input_ids"]
            batch["teacher_attention_mask"] = teacher["attention_mask"]
        if self.with_masks:
            batch["sam_pixel_values"] = torch.stack(sam_pixels)
            batch["sam_input_sizes"] = input_sizes
            batch["sam_original_sizes"] = original_sizes
            batch["gt_masks"] = gt_masks
            batch["annotated"] = annotated
        return batch

    def _response_ids(self, text: str) -> torch.Tensor:
        return torch.tensor(response_ids(self.processor.tokenizer, text), dtype=torch.long)

    @staticmethod
    def _pad(sequences: list[tuple[torch.Tensor, torch.Tensor]], pad_id: int) -> dict:
        """Right-pad prompt+response sequences; labels cover the response only."""
        input_ids, attention_mask = pad_sequences([torch.cat([p, r]) for p, r in sequences], pad_id)
        labels, _ = pad_sequences(
            [torch.cat([torch.full_like(p, IGNORE_INDEX), r]) for p, r in sequences], IGNORE_INDEX
        )
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
