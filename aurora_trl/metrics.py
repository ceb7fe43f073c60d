"""Mask metrics shared by the GRPO IoU reward and evaluation: one IoU, used everywhere.

Conventions follow the Ref-AVS benchmark: a frame is scored by IoU of the binarised prediction
(`sigmoid(logit) > threshold`) with the ground truth; a frame whose ground truth is empty scores the fraction of
true-negative pixels (so predicting nothing on a null frame scores 1). The official J uses threshold 0.4; AURORA's
training and its IoU reward use 0.5.
"""

import torch


def frame_iou(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5, eps: float = 1e-7) -> torch.Tensor:
    """Per-frame IoU `(T,)` of mask logits `(T, H, W)` against a binary ground truth of the same shape."""
    pred = logits.detach().float().sigmoid() > threshold
    gt = target.detach() > 0.5 if target.dtype.is_floating_point else target.detach().bool()
    pred, gt = pred.flatten(1), gt.flatten(1)
    intersection = (pred & gt).sum(1).float()
    union = (pred | gt).sum(1).float()
    true_negative = (~pred & ~gt).sum(1).float() / gt.shape[1]
    return torch.where(gt.any(1), intersection / (union + eps), true_negative)


def clip_iou(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float:
    """Mean over the frames of a clip of [`frame_iou`] (AURORA's IoU reward)."""
    return frame_iou(logits, target, threshold).mean().item()
