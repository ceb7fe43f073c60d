"""The configuration both AURORA trainers add for the masks they decode from `[SEG]`: the mask-loss weights and the
SAM image-embedding cache."""

from dataclasses import dataclass, field


@dataclass
class MaskLossArguments:
    r"""
    Mixed into [`AuroraSFTConfig`] and [`AuroraGRPOConfig`]. Defaults are AURORA's.

    Parameters:
        bce_loss_weight (`float`, *optional*, defaults to `2.0`):
            Weight of the per-frame mask binary cross-entropy between the decoded masks and the ground truth.
        dice_loss_weight (`float`, *optional*, defaults to `0.5`):
            Weight of the per-frame mask Dice loss (LISA's form: sums scaled by 1/1000, eps 1e-6). Both weights 0
            turn the mask loss off.
        sam_cache_dir (`str`, *optional*):
            Folder of the on-disk SAM image-embedding cache, reused across epochs and runs. Default: memory only.
        sam_cache_max_clips (`int`, *optional*, defaults to `64`):
            Clips whose SAM image embeddings stay in memory (least recently used out first); one 10-frame clip is
            2 MB at SAM ViT-H's 224 px. With more clips than this and no `sam_cache_dir`, later epochs encode
            again.
    """

    bce_loss_weight: float = field(default=2.0, metadata={"help": "Weight of the per-frame mask BCE (AURORA 2.0)."})
    dice_loss_weight: float = field(default=0.5, metadata={"help": "Weight of the per-frame mask Dice (AURORA 0.5)."})
    sam_cache_dir: str | None = field(
        default=None, metadata={"help": "On-disk SAM image-embedding cache folder (default: memory only)."}
    )
    sam_cache_max_clips: int = field(
        default=64, metadata={"help": "Clips whose SAM image embeddings stay in memory (LRU)."}
    )

    def mask_loss(self, bce, dice):
        """The weighted mask loss, `bce_loss_weight·BCE + dice_loss_weight·Dice`."""
        return self.bce_loss_weight * bce + self.dice_loss_weight * dice

    @property
    def trains_masks(self) -> bool:
        """Whether the mask loss is on (a weight is not 0)."""
        return self.bce_loss_weight != 0 or self.dice_loss_weight != 0
