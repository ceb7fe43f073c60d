"""The Ref-AVS metrics on hand-computed cases, and against a plain per-frame, per-threshold loop of the definitions."""

import math

import pytest
import torch

from aurora_trl.metrics import evaluate_clips, f_measure, frame_iou, mask_iou, null_s


BIG = 20.0  # a logit far enough from 0 that sigmoid is 0 or 1 for every threshold that matters


def logits_of(binary):
    return torch.where(torch.as_tensor(binary, dtype=torch.bool), BIG, -BIG).float()


# ---- the definitions written as the benchmark's loops: the reference the vectorised code must match
def loop_mask_iou(logits, target, threshold=0.4, eps=1e-7):
    total = 0.0
    for frame, gt in zip(logits, target):
        pred = (torch.sigmoid(frame) > threshold).int()
        gt = gt.int()
        if gt.sum() == 0:
            total += ((1 - pred) * (1 - gt)).sum().item() / (gt.numel() + eps)
        else:
            total += (pred * gt).sum().item() / (torch.max(pred, gt).sum().item() + eps)
    return total / len(logits)


def loop_f_measure(logits, target, beta2=0.3, num=255):
    thresholds = torch.linspace(0, 1 - 1e-10, num)
    score, frames = torch.zeros(num), 0
    for frame, gt in zip(torch.sigmoid(logits), target.float()):
        if gt.mean() == 0:
            continue
        f = torch.zeros(num)
        for i, threshold in enumerate(thresholds):
            pred = (frame >= threshold).float()
            tp = (pred * gt).sum()
            precision, recall = tp / (pred.sum() + 1e-20), tp / (gt.sum() + 1e-20)
            value = (1 + beta2) * precision * recall / (beta2 * precision + recall)
            f[i] = 0.0 if torch.isnan(value) else value
        score, frames = score + f, frames + 1
    return (score / frames).max().item() if frames else 0.0


def test_iou_hand_cases():
    gt = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]], [[1, 0], [0, 0]]])
    pred = logits_of([[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[1, 1], [1, 0]], [[1, 1], [1, 1]]])
    # half overlap; empty frame predicted empty (4 TN / 4); empty frame, 3 false positives (1/4); all-foreground (1/4)
    expected = [0.5, 1.0, 0.25, 0.25]
    assert frame_iou(pred, gt, threshold=0.4).tolist() == pytest.approx(expected, abs=1e-6)
    assert mask_iou(pred, gt) == pytest.approx(sum(expected) / 4, abs=1e-6)


def test_f_measure_hand_cases():
    gt = torch.zeros(2, 4, 4)
    gt[0, :2] = 1  # half the frame
    assert f_measure(logits_of(gt.bool()), gt) == pytest.approx(1.0, abs=1e-6)  # perfect
    everything = torch.full((2, 4, 4), BIG)
    a = 0.5  # all-foreground prediction: P = a, R = 1 on the one frame with a target
    assert f_measure(everything, gt) == pytest.approx(1.3 * a / (0.3 * a + 1), abs=1e-6)
    assert f_measure(everything, torch.zeros(2, 4, 4)) == 0.0  # no frame has a target


def test_null_s_hand_cases():
    pred = torch.full((2, 4, 4), -BIG)
    pred[0, 0] = BIG  # 4 of 32 pixels
    assert null_s(pred) == pytest.approx(math.sqrt(4 / 32))
    assert null_s(torch.full((1, 8, 8), -BIG)) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_metrics_equal_the_loops(seed):
    torch.manual_seed(seed)
    logits = torch.randn(6, 16, 16) * 3
    target = torch.rand(6, 16, 16) > 0.6
    target[2] = False  # an empty frame among them
    assert mask_iou(logits, target) == pytest.approx(loop_mask_iou(logits, target), abs=1e-6)
    assert f_measure(logits, target) == pytest.approx(loop_f_measure(logits, target), abs=1e-6)


def test_shape_errors_say_which():
    with pytest.raises(ValueError, match="ground truth shape \\(2, 4, 4\\) differs from logits shape \\(2, 4, 5\\)"):
        mask_iou(torch.zeros(2, 4, 5), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="logits must be \\(frames, H, W\\)"):
        null_s(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="2 predicted clips for 1 ground-truth clips"):
        evaluate_clips([torch.zeros(1, 4, 4)] * 2, [torch.zeros(1, 4, 4)])


def test_evaluate_clips_protocols():
    gt = torch.zeros(10, 256, 256, dtype=torch.bool)  # already the benchmark's size: resizing changes nothing
    gt[:, 64:128, 32:160] = True
    perfect, nothing = logits_of(gt), torch.full((10, 256, 256), -BIG)
    clips = [perfect] * 5 + [nothing] * 3
    scores = evaluate_clips(clips, [gt] * 8)
    # batches of 4 clips: (4 perfect) and (1 perfect + 3 empty) -> J = (1 + 0.25) / 2
    assert scores["J"] == pytest.approx((1.0 + 0.25) / 2, abs=1e-6) and scores["clips"] == 8
    assert evaluate_clips(clips, [gt] * 8, protocol="aurora")["J"] == pytest.approx(5 / 8, abs=1e-6)
    assert evaluate_clips([nothing] * 3, [torch.zeros_like(gt)] * 3, null=True)["S"] == 0.0
    with pytest.raises(ValueError, match="protocol"):
        evaluate_clips(clips, [gt] * 8, protocol="lisa")


# ---- AVSBench: per-clip J (threshold 0.5) and F, averaged over clips
def loop_avsbench(clips, targets):
    """AVSBench's test loop with a batch of one clip: each clip's J and F from the per-frame definitions, then the
    mean over clips."""
    j = [loop_mask_iou(x, t, threshold=0.5) for x, t in zip(clips, targets)]
    f = [loop_f_measure(x, t) for x, t in zip(clips, targets)]
    return sum(j) / len(j), sum(f) / len(f)


@pytest.mark.parametrize("seed", range(4))
def test_avsbench_protocol_equals_its_definition_on_random_clips(seed):
    generator = torch.Generator().manual_seed(seed)
    clips, targets = [], []
    for _ in range(5):
        frames, height, width = 5, int(torch.randint(8, 20, (1,), generator=generator)), 16
        clips.append(torch.randn(frames, height, width, generator=generator) * 3)
        target = torch.rand(frames, height, width, generator=generator) > 0.6
        target[int(torch.randint(frames, (1,), generator=generator))] = False  # an empty-mask frame in every clip
        targets.append(target)
    scores = evaluate_clips(clips, targets, protocol="avsbench")
    j, f = loop_avsbench(clips, targets)
    assert scores["J"] == pytest.approx(j, abs=1e-6) and scores["F"] == pytest.approx(f, abs=1e-6)
    assert scores["clips"] == 5


def test_avsbench_scores_only_the_annotated_frames():
    gt = torch.zeros(5, 8, 8, dtype=torch.bool)
    gt[0, 2:6, 2:6] = True  # S4 training clips: only the first frame has a mask
    logits = torch.full((5, 8, 8), -BIG)
    logits[0] = logits_of(gt[0])  # right on the first frame, nothing on the others (whose truth is unknown)
    first_only = torch.tensor([True, False, False, False, False])
    scores = evaluate_clips([logits], [gt], protocol="avsbench", annotated=[first_only])
    assert scores["J"] == pytest.approx(1.0, abs=1e-6) and scores["F"] == pytest.approx(1.0, abs=1e-6)
    wrong = logits.clone()
    wrong[1:] = BIG  # frames 1-4 are not annotated: what the model predicts there does not count
    assert evaluate_clips([wrong], [gt], protocol="avsbench", annotated=[first_only])["J"] == scores["J"]
    with pytest.raises(ValueError, match="one \\(T,\\) flag per frame"):
        evaluate_clips([logits], [gt], protocol="avsbench", annotated=[first_only[:3]])
    with pytest.raises(ValueError, match="no null split"):
        evaluate_clips([logits], [gt], null=True, protocol="avsbench")
