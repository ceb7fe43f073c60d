"""Configuration of the supervised stages (0: direct answers, 1: CoT + distillation, 2: reflective paths)."""

from dataclasses import dataclass, field

from transformers import TrainingArguments
from trl import SFTConfig

from aurora_trl.text import SFT_TARGETS
from aurora_trl.trainers.mask_arguments import MaskLossArguments
from aurora_trl.trainers.unsupported import IGNORED, REFUSED, refuse_unsupported


@dataclass
class AuroraSFTConfig(MaskLossArguments, SFTConfig):
    r"""
    [`~trl.SFTConfig`] plus AURORA's loss terms, and [`MaskLossArguments`] (the mask-loss weights and the SAM
    cache). Only the new fields are listed; defaults are AURORA's.

    Loss: `ce_loss_weight·CE + bce_loss_weight·BCE + dice_loss_weight·Dice + distill_loss_weight·MSE`, where BCE and
    Dice compare the masks decoded from the response's `[SEG]` with the ground truth (per frame, averaged), and MSE
    compares the student's 256-d `[SEG]` prompt embedding with a frozen teacher's, the teacher seeing the prompt
    followed by `It is {class} [SEG].`.

    Parameters:
        sft_target (`str`, *optional*, defaults to `"reasoning"`):
            What the model learns to answer: `direct` (Stage 0, `It is {class} [SEG].`), `reasoning` (Stage 1, the CoT
            path then `It is [SEG].`) or `reflective` (Stage 2). Rows without that text are dropped, and counted.
        ce_loss_weight (`float`, *optional*, defaults to `1.0`):
            Weight of the token cross-entropy on the response.
        distill_loss_weight (`float`, *optional*, defaults to `1.0`):
            Weight λ of the `[SEG]` feature distillation. AURORA's value is not published (its code computes the
            term but leaves it commented out); 0 disables the teacher.
        max_length (`int` or `None`, *optional*, defaults to `4096`):
            Longest prompt + response, in tokens. Rows longer than this are left out before training and named in
            the log, never cut (a cut would drop the answer's `[SEG]`); `None` keeps every row. A 10-frame 16:9
            clip at the default `max_pixels` is a 2,212-token prompt with Qwen2.5-Omni's tokenizer.
        teacher_model_name_or_path (`str`, *optional*):
            The frozen distillation teacher (a Stage-0 checkpoint). Default: with LoRA, the policy with its adapters
            disabled, i.e. the checkpoint training started from, at no extra memory; without LoRA, a frozen copy of
            the starting model. Its `[SEG]` embedding of a row is computed once and kept (1 KB a row).
        dataloader_num_workers (`int`, *optional*, defaults to `2`):
            Worker processes that collate batches (decode frames and audio, run the processor) while the model
            trains; TrainingArguments' 0 collates between steps, in the training process.
    """

    sft_target: str = field(
        default="reasoning",
        metadata={
            "help": "What to answer: direct (Stage 0), reasoning (Stage 1) or reflective (Stage 2).",
            "choices": list(SFT_TARGETS),
        },
    )
    ce_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the response cross-entropy."})
    distill_loss_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the [SEG] feature distillation (MSE to a frozen teacher); 0 disables it. "
            "AURORA does not publish its value."
        },
    )
    max_length: int | None = field(
        default=4096,
        metadata={
            "help": "Longest prompt + response in tokens; longer rows are left out and named in the log, never cut. "
            "None keeps every row."
        },
    )
    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Frozen distillation teacher (Stage-0 checkpoint). Default: the starting checkpoint "
            "(the adapter-disabled policy under LoRA, else a frozen copy)."
        },
    )
    dataloader_num_workers: int = field(
        default=2,
        metadata={"help": "Worker processes that collate batches while the model trains (0: in the training loop)."},
    )

    # The dataclass repr TRL's config gets shows `hub_token` in clear (in `{args!r}`, a list of configs, a
    # traceback); TrainingArguments' own masks every `*_token` field.
    __repr__ = TrainingArguments.__str__

    # SFTConfig options that act on TRL's own data preparation and collator, which the AURORA collator replaces.
    UNSUPPORTED_OPTIONS = {
        "packing": (REFUSED, "one clip per sequence; packing would merge clips, their frames and their [SEG]"),
        "padding_free": (REFUSED, "the image and audio features need padded batches"),
        "packing_strategy": (IGNORED, "no packing"),
        "pad_to_multiple_of": (IGNORED, "the AURORA collator pads to the longest row"),
        "completion_only_loss": (IGNORED, "the loss always covers the response only"),
        "assistant_only_loss": (IGNORED, "the loss always covers the response only"),
        "dataset_text_field": (IGNORED, "rows are read by their fields (data_prep's schema)"),
        "dataset_num_proc": (IGNORED, "TRL's data preparation is skipped"),
        "eos_token": (IGNORED, "the answer ends with the processor's end of turn"),
    }

    def __post_init__(self):
        refuse_unsupported(self)
        super().__post_init__()
        if self.sft_target not in SFT_TARGETS:
            raise ValueError(f"sft_target must be one of {', '.join(SFT_TARGETS)}, got {self.sft_target!r}")
        # The AURORA collator builds ids, labels and the image/audio/mask tensors from raw rows itself: TRL must not
        # tokenise the data set or drop its columns; `max_length` is applied by leaving rows out, not by truncation.
        self.remove_unused_columns = False
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
