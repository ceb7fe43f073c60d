"""Configuration of Stage 3: GRPO with format, class and mask-IoU rewards, and AURORA's mask loss on the rollouts."""

from dataclasses import dataclass, field

from transformers import TrainingArguments
from trl import GRPOConfig

from aurora_trl.trainers.mask_arguments import MaskLossArguments
from aurora_trl.trainers.unsupported import IGNORED, REFUSED, refuse_unsupported


@dataclass
class AuroraGRPOConfig(MaskLossArguments, GRPOConfig):
    r"""
    [`~trl.GRPOConfig`] plus the IoU reward's threshold, and [`MaskLossArguments`] (the weights of AURORA's mask loss
    on every rollout's masks, 0 and 0 for pure GRPO, and the SAM cache). Only the new fields are listed.

    AURORA samples G = 3 answers per clip at temperature 1.0 and top-p 0.9 (set those in the recipe), uses no KL
    term in practice (its β = 0.04 is declared but never applied; `beta` here is TRL's and defaults to 0.0), and adds
    `2.0·BCE + 0.5·Dice` between the rollouts' masks and the ground truth to the policy loss.

    Parameters:
        iou_threshold (`float`, *optional*, defaults to `0.5`):
            Sigmoid threshold of the IoU reward (AURORA 0.5; the official Ref-AVS J uses 0.4).
    """

    iou_threshold: float = field(default=0.5, metadata={"help": "Sigmoid threshold of the IoU reward."})

    # The dataclass repr TRL's config gets shows `hub_token` in clear (in `{args!r}`, a list of configs, a
    # traceback); TrainingArguments' own masks every `*_token` field.
    __repr__ = TrainingArguments.__str__

    # GRPOConfig options the AURORA trainer cannot honour (the trainer refuses use_vllm at start).
    UNSUPPORTED_OPTIONS = {
        "use_vllm": (
            REFUSED,
            "vLLM generates text only, while each AURORA rollout needs the policy's own hidden state at [SEG] (for its "
            "masks and IoU) and the clip's audio features",
        ),
        "vllm_*": (IGNORED, "vLLM is not used"),
    }

    def __post_init__(self):
        refuse_unsupported(self)  # before TRL's checks, which would ask for vLLM itself
        super().__post_init__()
