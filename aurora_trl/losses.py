"""Mask and distillation losses shared by the SFT and GRPO stages (AURORA/LISA definitions).

Every mask loss takes one clip's logits and ground truth, `(T, H, W)` each, and averages per-frame values over the
T frames, as AURORA does. Empty ground-truth frames (null rows) are well defined: BCE pushes every logit down and
Dice, with its epsilon, stays finite.
"""

import torch
import torch.nn.functional as F


DICE_SCALE = 1000.0  # LISA divides the sums by 1000 before the ratio; with eps 1e-6 this sets how empty frames score
DICE_EPS = 1e-6


def mask_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, mean over the pixels of each frame, then over frames."""
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return per_pixel.flatten(1).mean(1).mean()


def mask_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LISA's Dice loss per frame, `1 - (2 Σ σ(p)·g + eps) / (Σ σ(p) + Σ g + eps)` on sums scaled by 1/1000,
    averaged over frames."""
    prob = logits.float().sigmoid().flatten(1)
    target = target.float().flatten(1)
    numerator = 2 * (prob / DICE_SCALE * target).sum(1)
    denominator = (prob / DICE_SCALE).sum(1) + (target / DICE_SCALE).sum(1)
    return (1 - (numerator + DICE_EPS) / (denominator + DICE_EPS)).mean()


def seg_distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between the student's `[SEG]` prompt embeddings and the (detached) teacher's, mean over all values."""
    return F.mse_loss(student.float(), teacher.detach().float())


def clip_mask_losses(masks, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean BCE and mean Dice over a batch of clips: `masks` and `targets` are lists of `(T, H, W)` tensors (clips may
    differ in size)."""
    bce = torch.stack([mask_bce_loss(m, t.to(m.device)) for m, t in zip(masks, targets)]).mean()
    dice = torch.stack([mask_dice_loss(m, t.to(m.device)) for m, t in zip(masks, targets)]).mean()
    return bce, dice
