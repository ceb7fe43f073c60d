"""Mask metrics of the Ref-AVS benchmark, vectorised in torch, and the one IoU used everywhere.

Semantics follow the benchmark's own code (GeWu-Lab/Ref-AVS `utils/metric/utility.py`) exactly:

- J, [`mask_iou`]: per frame, `sigmoid(logit) > threshold` (0.4 officially), IoU = intersection / (union + eps); a
  frame whose ground truth is empty scores its true-negative pixels / (pixels + eps), so predicting nothing on a
  null frame scores 1. Mean over the frames.
- F, [`f_measure`]: sigmoid, then 255 thresholds `linspace(0, 1 - 1e-10)` with `>=`; per frame precision and
  recall (each with 1e-20 in the denominator), F = (1 + β²)PR / (β²P + R) with β² = 0.3 and NaN -> 0; frames with
  empty ground truth are skipped; mean over the frames, then max over the thresholds; 0.0 when no frame has a
  target (the benchmark's code returns its zero-initialised score then).
- S, [`null_s`]: sqrt(pixels with `sigmoid(logit) > 0.5` / all pixels) over the batch; lower is better.

AURORA's training uses the same IoU with threshold 0.5 ([`clip_iou`], the GRPO IoU reward).

AVSBench (unreferenced segmentation; its `utils/utility.py` and `test.py`) uses the same per-frame J and F with J's
threshold at 0.5, and scores each clip on its own (a test batch of one clip: J over its frames, F the maximum of its
own averaged curve), then averages over clips: [`evaluate_clips`] with `protocol="avsbench"`, at the frames' own
resolution. Frames without ground truth (S4's training clips annotate only the first) are left out through
`annotated`.
"""

import math

import torch
import torch.nn.functional as F


REFAVS_SIZE = 256  # the benchmark scores predictions and masks at 256 x 256
REFAVS_BATCH_CLIPS = 4  # ... in batches of 4 clips (40 frames), averaged over batches
REFAVS_J_THRESHOLD = 0.4
NULL_S_THRESHOLD = 0.5
AVSBENCH_J_THRESHOLD = 0.5
PROTOCOLS = ("refavs", "aurora", "avsbench")


# A finite stand-in for +-inf logits before bilinear resizing: interpolating +inf with -inf gives NaN, while any
# finite logit of this size already means a sigmoid of exactly 0 or 1.
_RESIZE_LIMIT = 1e30


def _check(logits: torch.Tensor, target: torch.Tensor | None = None, allow_nan: bool = False) -> None:
    """Shapes must match and hold pixels, and the ground truth must be a mask.

    NaN logits are refused unless `allow_nan`: `sigmoid(NaN) > t` is False, so a NaN frame would otherwise score as
    "predicts nothing" (1.0 on a frame with an empty ground truth), a plausible number from a broken model. +-inf
    are valid logits: certain foreground / background.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (frames, H, W), got shape {tuple(logits.shape)}")
    if target is not None and target.shape != logits.shape:
        raise ValueError(f"ground truth shape {tuple(target.shape)} differs from logits shape {tuple(logits.shape)}")
    if logits.numel() == 0:
        raise ValueError(f"logits are empty: shape {tuple(logits.shape)}")
    if not allow_nan and torch.isnan(logits.detach()).any():
        raise ValueError(f"logits contain NaN (shape {tuple(logits.shape)})")
    if target is not None and target.dtype.is_floating_point and torch.isnan(target.detach()).any():
        raise ValueError(f"ground truth contains NaN (shape {tuple(target.shape)})")


def _binary(target: torch.Tensor) -> torch.Tensor:
    return target > 0.5 if target.dtype.is_floating_point else target.bool()


def frame_iou(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5, eps: float = 1e-7) -> torch.Tensor:
    """Per-frame IoU `(T,)` of mask logits `(T, H, W)` against a binary ground truth of the same shape.

    A frame whose logits hold a NaN scores NaN. Training calls this (the GRPO IoU reward, the SFT `mask/iou` log):
    there a NaN mask in one step (e.g. an fp16 overflow the grad scaler skips) must not stop the run, and the
    reward reads a NaN IoU as "not applicable". The benchmark metrics refuse NaN logits instead.
    """
    _check(logits, target, allow_nan=True)
    pred = (logits.detach().float().sigmoid() > threshold).flatten(1)
    gt = _binary(target.detach()).flatten(1)
    has_target = gt.any(1)
    intersection = (pred & gt).sum(1)
    union = (pred | gt).sum(1)
    true_negative = (~pred & ~gt).sum(1)
    numerator = torch.where(has_target, intersection, true_negative).float()
    denominator = torch.where(has_target, union, torch.full_like(union, gt.shape[1])).float()
    iou = numerator / (denominator + eps)
    return torch.where(torch.isnan(logits.detach()).flatten(1).any(1), torch.nan, iou)


def clip_iou(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float:
    """Mean over the frames of a clip of [`frame_iou`] (AURORA's IoU reward: threshold 0.5); NaN when any frame's
    logits hold a NaN (see [`frame_iou`])."""
    return frame_iou(logits, target, threshold).mean().item()


def mask_iou(logits: torch.Tensor, target: torch.Tensor, threshold: float = REFAVS_J_THRESHOLD) -> float:
    """The benchmark's J of one batch of frames `(N, H, W)`: mean per-frame IoU at `threshold`.

    Raises `ValueError` for NaN logits (see `_check`)."""
    _check(logits, target)
    return frame_iou(logits, target, threshold).mean().item()


def f_measure(
    logits: torch.Tensor,
    target: torch.Tensor,
    beta2: float = 0.3,
    num_thresholds: int = 255,
    apply_sigmoid: bool = True,
) -> float:
    """The benchmark's F of one batch of frames `(N, H, W)` (see the module docstring).

    All thresholds at once: each pixel's score is bucketed by how many thresholds it reaches, and suffix sums of
    the per-frame bucket counts give the predicted positives and true positives at every threshold.
    `apply_sigmoid=False` scores raw logits, as AURORA's own evaluation does. Raises `ValueError` for NaN logits.
    """
    _check(logits, target)
    gt = _binary(target.detach()).flatten(1)
    keep = gt.float().mean(1) != 0
    if not keep.any():
        return 0.0
    scores = logits.detach().float().flatten(1)[keep]
    scores = scores.sigmoid() if apply_sigmoid else scores
    gt = gt[keep].float()
    frames = scores.shape[0]
    thresholds = torch.linspace(0, 1 - 1e-10, num_thresholds, device=scores.device)
    reached = torch.searchsorted(thresholds, scores.contiguous(), right=True)  # score >= thresholds[k] for k < reached
    index = (reached + torch.arange(frames, device=scores.device)[:, None] * (num_thresholds + 1)).flatten()
    size = frames * (num_thresholds + 1)
    counts = torch.bincount(index, minlength=size).view(frames, -1)
    hits = torch.bincount(index, weights=gt.flatten(), minlength=size).view(frames, -1)
    predicted = counts.flip(1).cumsum(1).flip(1)[:, 1:].float()  # pixels reaching threshold k
    true_positive = hits.flip(1).cumsum(1).flip(1)[:, 1:].float()
    precision = true_positive / (predicted + 1e-20)
    recall = true_positive / (gt.sum(1, keepdim=True) + 1e-20)
    f = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    return torch.nan_to_num(f, nan=0.0).mean(0).max().item()


def null_s(logits: torch.Tensor, threshold: float = NULL_S_THRESHOLD) -> float:
    """The benchmark's S of one batch of frames: sqrt of the share of pixels predicted as foreground.

    Raises `ValueError` for NaN logits (see `_check`)."""
    _check(logits)
    return math.sqrt((logits.detach().float().sigmoid() > threshold).float().mean().item())


def evaluate_clips(
    logits: list[torch.Tensor],
    targets: list[torch.Tensor],
    null: bool = False,
    protocol: str = "refavs",
    annotated: list[torch.Tensor] | None = None,
) -> dict[str, float]:
    """Score a split given each clip's mask logits and ground truth, `(T, H, W)` each (sizes may differ by clip).

    `protocol="refavs"` is the benchmark's: everything resized to 256 x 256, batches of 4 clips, J at 0.4, F on
    sigmoids, mean over batches; a null split gets S. `protocol="aurora"` is AURORA's variant: native resolution,
    one clip per batch, J at 0.5, F on raw logits; it has no null metric, so S is reported with the benchmark's
    definition at native resolution. `protocol="avsbench"` is AVSBench's: native resolution, one clip per batch,
    J at 0.5, F on sigmoids, mean over clips; it has no null split. `annotated` gives each clip's frames that carry
    ground truth, `(T,)` booleans; the others are not scored.
    """
    if len(logits) != len(targets):
        raise ValueError(f"{len(logits)} predicted clips for {len(targets)} ground-truth clips")
    if not logits:
        raise ValueError("no clips to score")  # a mean over nothing would be a silent NaN
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if null and protocol == "avsbench":
        raise ValueError("AVSBench has no null split: every clip has a sounding object")
    for clip_logits, clip_target in zip(logits, targets):
        _check(clip_logits, clip_target)
    if annotated is not None:
        kept = [(x, t) for x, t in zip(*annotated_only(logits, targets, annotated)) if len(x)]
        if not kept:
            raise ValueError("no annotated frame to score")
        logits, targets = [x for x, _ in kept], [t for _, t in kept]
    if protocol == "refavs":
        logits = [_resize(x, mode="bilinear") for x in logits]
        # cv2.resize (bilinear) of the 0/255 mask, then > 0: any pixel touched by the mask counts
        targets = [_resize(_binary(t).float(), mode="bilinear") > 0 for t in targets]
        batch, threshold, sigmoid = REFAVS_BATCH_CLIPS, REFAVS_J_THRESHOLD, True
    elif protocol == "avsbench":
        batch, threshold, sigmoid = 1, AVSBENCH_J_THRESHOLD, True
    else:
        batch, threshold, sigmoid = 1, 0.5, False
    batches = [(logits[i : i + batch], targets[i : i + batch]) for i in range(0, len(logits), batch)]
    if null:
        return {"S": _mean([null_s(torch.cat(x)) for x, _ in batches]), "clips": len(logits)}
    j = [mask_iou(torch.cat(x), torch.cat(t), threshold) for x, t in batches]
    f = [f_measure(torch.cat(x), torch.cat(t), apply_sigmoid=sigmoid) for x, t in batches]
    return {"J": _mean(j), "F": _mean(f), "clips": len(logits)}


def annotated_only(masks: list[torch.Tensor], targets: list[torch.Tensor], annotated: list[torch.Tensor]) -> tuple:
    """Each clip's `(T, H, W)` masks and targets cut to its annotated frames (`(T,)` booleans), each clip in its
    place. What the losses, the IoU reward and the metrics score: a frame without ground truth is not a frame whose
    object is absent. (The data set builders keep only rows with at least one annotated frame.)"""
    if len(annotated) != len(masks) or any(len(a) != len(m) for a, m in zip(annotated, masks)):
        raise ValueError("annotated needs one (T,) flag per frame of each clip")
    return [m[a.to(m.device)] for m, a in zip(masks, annotated)], [
        t[a.to(t.device)] for t, a in zip(targets, annotated)
    ]


def _resize(x: torch.Tensor, mode: str) -> torch.Tensor:
    x = x.float().clamp(-_RESIZE_LIMIT, _RESIZE_LIMIT)
    return F.interpolate(x[None], size=(REFAVS_SIZE, REFAVS_SIZE), mode=mode, align_corners=False)[0]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
