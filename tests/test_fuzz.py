"""Property tests with hypothesis: reward functions, mask metrics and the data-set builder on arbitrary input.

Each property says what must hold for *any* input of its kind:

- rewards: one value per completion, each None or a finite float in the function's documented range, never an
  exception, whatever the text, its shape (string, conversation, content blocks) or the keyword arguments;
- metrics: a `ValueError` that says what is wrong, or a number in [0, 1] equal to a plain per-frame reference;
  never a silent NaN (`frame_iou`/`clip_iou` return NaN for NaN logits on purpose: see their docstrings);
- builder: random damage to a synthetic Ref-AVS folder never raises, and every metadata record ends up exactly once
  in the data set or in the skip report.
"""

import csv
import io
import math
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import load_from_disk
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from aurora_trl.metrics import (
    REFAVS_SIZE,
    clip_iou,
    evaluate_clips,
    f_measure,
    frame_iou,
    mask_iou,
    null_s,
)
from aurora_trl.rewards import REWARD_FUNCS
from data_prep.build import build_dataset
from data_prep.refavs import BadRow, read_frames, read_metadata
from data_prep.synth import write_synthetic_refavs


def fuzz(examples: int, **kwargs):
    """Hypothesis settings: a fixed budget of examples, no per-example deadline (the CPU is shared), and no example
    database: failures are replayed from the printed example, not from files in the checkout."""
    return settings(max_examples=examples, deadline=None, database=None, **kwargs)


FAST = fuzz(100)
INF, NAN = math.inf, math.nan

# ================================================================================================ rewards
# Documented ranges: format 0/1, class 0-2 (None without a class), reasoning 0-1, IoU 0-1 (None when not computed).
REWARD_RANGES = {"format": (0.0, 1.0), "class": (0.0, 2.0), "reasoning": (0.0, 1.0), "iou": (0.0, 1.0)}

# Text that tends to hit the parsers: the answer suffix, step headers, class phrases, end-of-turn markers.
FRAGMENTS = st.sampled_from(
    ["It is [SEG].", "[SEG]", "The target is ", "the TARGET is: ", "Step 1", "**Step 2**", "Step3:", "Step 4 (answer):",
     "<|im_end|>", "</s>", "guitar", "null", "nothing", '"', "\n", " ", "\u202e", "\x00", "🙂"]
)  # fmt: skip
TEXT = st.one_of(st.text(max_size=200), st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=30).map("".join))
NOT_TEXT = st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.integers(), max_size=2))
CONTENT_BLOCK = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(TEXT, NOT_TEXT)}),
    st.fixed_dictionaries({"type": st.just("image")}),
    TEXT,  # a bare string among the blocks
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["assistant", "user", "tool"])},
    optional={"content": st.one_of(TEXT, NOT_TEXT, st.lists(CONTENT_BLOCK, max_size=4))},
)
COMPLETION = st.one_of(TEXT, st.lists(MESSAGE, max_size=3), st.none())
IOU_VALUE = st.one_of(
    st.none(),
    st.floats(),  # NaN, +-inf, out-of-range values included
    st.floats(0, 1),
    st.sampled_from([NAN, INF, -INF, -0.0, 1.0 + 1e-9, "0.5", True]),
    st.builds(lambda x: torch.tensor(x), st.floats(0, 1)),
    st.builds(np.float32, st.floats(allow_nan=True, width=32)),
)
CLASS_VALUE = st.one_of(st.none(), TEXT, st.sampled_from(["guitar", "null", "emergency-car"]), st.just(NAN))


@st.composite
def reward_call(draw):
    """`(completions, kwargs)`: columns present or absent, per-row lists or scalars, plus unknown columns."""
    completions = draw(st.lists(COMPLETION, max_size=6))
    n = len(completions)
    kwargs = {}
    if draw(st.booleans()):
        kwargs["class_name"] = draw(
            st.one_of(CLASS_VALUE, st.lists(CLASS_VALUE, min_size=n, max_size=n), st.tuples(*[CLASS_VALUE] * n))
        )
    if draw(st.booleans()):
        kwargs["iou"] = draw(st.one_of(st.none(), st.lists(IOU_VALUE, min_size=n, max_size=n)))
    extra = draw(st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(NOT_TEXT, TEXT), max_size=3))
    for key, value in extra.items():
        kwargs.setdefault(key, value)  # unknown columns, as TRL passes every data-set column
    for key in ("prompts", "completion_ids", "trainer_state"):
        if draw(st.booleans()):
            kwargs[key] = [None] * n
    if draw(st.booleans()):  # token ids and the [SEG] id, as the AURORA trainer passes them, or junk
        ids = st.one_of(st.lists(st.integers(0, 9), max_size=6), NOT_TEXT, TEXT)
        kwargs["completion_ids"] = draw(st.lists(ids, min_size=n, max_size=n))
        kwargs["seg_token_id"] = draw(
            st.one_of(st.integers(0, 9), st.lists(st.integers(0, 9), min_size=n, max_size=n))
        )
    return completions, kwargs


@pytest.mark.parametrize("name", sorted(REWARD_FUNCS))
@FAST
@given(call=reward_call())
def test_rewards_never_raise_and_stay_in_range(name, call):
    completions, kwargs = call
    low, high = REWARD_RANGES[name]
    rewards = REWARD_FUNCS[name](completions, **kwargs)
    assert isinstance(rewards, list) and len(rewards) == len(completions)
    for value in rewards:
        assert value is None or (type(value) is float and math.isfinite(value) and low <= value <= high), value


@pytest.mark.parametrize(
    "name, column", [("class", "class_name"), ("iou", "iou"), ("format", "completion_ids"), ("format", "seg_token_id")]
)
@fuzz(30)
@given(n=st.integers(0, 5), m=st.integers(0, 5))
def test_a_column_of_another_length_is_an_error(name, column, n, m):
    """zip() would pair rewards with the wrong completions, silently; TRL always passes one value per row."""
    assume(n != m)
    values = {"iou": 0.5, "class_name": "guitar", "completion_ids": [7], "seg_token_id": 7}
    other = {"completion_ids": [[7]] * n, "seg_token_id": 7} if name == "format" else {}
    with pytest.raises(ValueError, match=f"{column} has {m} values for {n} completions"):
        REWARD_FUNCS[name](["It is [SEG]."] * n, **{**other, column: [values[column]] * m})


def test_iou_reward_keeps_only_ious():
    iou = [0.25, NAN, INF, -0.1, 1.5, None, "0.5", torch.tensor(1.0), np.float32(0.5)]
    assert REWARD_FUNCS["iou"]([""] * len(iou), iou=iou) == [0.25, None, None, None, None, None, None, 1.0, 0.5]


# ================================================================================================ metrics
LOGIT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
TARGET_DTYPES = [torch.bool, torch.uint8, torch.int32, torch.int64, torch.float16, torch.float32, torch.float64]
FINITE_LOGIT = st.floats(-1e6, 1e6, allow_nan=False) | st.floats(-30, 30, allow_nan=False)
LOGIT = st.one_of(FINITE_LOGIT, FINITE_LOGIT, st.sampled_from([INF, -INF, 0.0]))
# what each target dtype may hold; foreground is `> 0.5` for floats and non-zero for integers
TARGET_VALUES = {
    torch.bool: [0, 1],
    torch.uint8: [0, 1, 255],
    torch.int32: [0, 1, -1, 7],
    torch.int64: [0, 1, 255],
    torch.float16: [0.0, 1.0, 0.25, 0.75],
    torch.float32: [0.0, 1.0, 0.5, 0.51, INF, -INF],
    torch.float64: [0.0, 1.0, 0.3, 0.9],
}


@st.composite
def shapes(draw, max_frames=4, max_side=7):
    return draw(st.tuples(st.integers(1, max_frames), st.integers(1, max_side), st.integers(1, max_side)))


@st.composite
def logits_of(draw, shape, nan=False):
    values = draw(
        st.lists(LOGIT | st.just(NAN) if nan else LOGIT, min_size=math.prod(shape), max_size=math.prod(shape))
    )
    dtype = draw(st.sampled_from(LOGIT_DTYPES))
    return torch.tensor(values, dtype=torch.float64).reshape(shape).to(dtype)  # out-of-range values become +-inf


@st.composite
def targets_of(draw, shape):
    dtype = draw(st.sampled_from(TARGET_DTYPES))
    values = draw(
        st.lists(st.sampled_from(TARGET_VALUES[dtype]), min_size=math.prod(shape), max_size=math.prod(shape))
    )
    if dtype == torch.bool:
        return torch.tensor(values, dtype=torch.bool).reshape(shape)
    return torch.tensor(values, dtype=torch.float64).reshape(shape).to(dtype)


# ---- the definitions, one frame (and one threshold) at a time, in float32 as the metrics compute
def ref_binary(gt):
    return gt > 0.5 if gt.dtype.is_floating_point else gt != 0


def ref_frame_iou(frame, gt, threshold):
    frame = frame.float()
    if torch.isnan(frame).any():
        return NAN
    pred, gt = torch.sigmoid(frame) > threshold, ref_binary(gt)
    if gt.any():
        return (pred & gt).sum().item() / ((pred | gt).sum().item() + 1e-7)
    return (~pred).sum().item() / (gt.numel() + 1e-7)


def ref_mean_iou(logits, target, threshold):
    return sum(ref_frame_iou(x, t, threshold) for x, t in zip(logits, target)) / len(logits)


def ref_f_measure(logits, target, apply_sigmoid=True, beta2=0.3, num=255):
    thresholds = torch.linspace(0, 1 - 1e-10, num)[:, None]
    per_frame = []
    for frame, gt in zip(logits.float(), target):
        gt = ref_binary(gt).flatten()
        if not gt.any():
            continue  # frames without a target do not count
        score = (torch.sigmoid(frame) if apply_sigmoid else frame).flatten()
        pred = score[None, :] >= thresholds  # (thresholds, pixels)
        tp = (pred & gt).sum(1).double()
        precision, recall = tp / (pred.sum(1) + 1e-20), tp / (gt.sum() + 1e-20)
        f = (1 + beta2) * precision * recall / (beta2 * precision + recall)
        per_frame.append(torch.nan_to_num(f, nan=0.0))
    return torch.stack(per_frame).mean(0).max().item() if per_frame else 0.0


def ref_null_s(logits):
    return math.sqrt((torch.sigmoid(logits.float()) > 0.5).sum().item() / logits.numel())


def assert_score(value, expected, tol=1e-5):
    assert type(value) is float and math.isfinite(value) and -1e-9 <= value <= 1 + 1e-9, value
    assert value == pytest.approx(expected, abs=tol)


@st.composite
def metric_inputs(draw, nan=False, max_frames=4):
    shape = draw(shapes(max_frames=max_frames))
    return draw(logits_of(shape, nan=nan)), draw(targets_of(shape))


@FAST
@given(inputs=metric_inputs(), threshold=st.sampled_from([0.4, 0.5]))
def test_iou_metrics_equal_the_per_frame_definition(inputs, threshold):
    logits, target = inputs
    per_frame = frame_iou(logits, target, threshold)
    assert per_frame.shape == (logits.shape[0],) and torch.isfinite(per_frame).all()
    expected = [ref_frame_iou(x, t, threshold) for x, t in zip(logits, target)]
    assert per_frame.tolist() == pytest.approx(expected, abs=1e-5)
    assert_score(clip_iou(logits, target, threshold), ref_mean_iou(logits, target, threshold))
    assert_score(mask_iou(logits, target, threshold), ref_mean_iou(logits, target, threshold))


@fuzz(60)
@given(inputs=metric_inputs(), apply_sigmoid=st.booleans())
def test_f_measure_and_null_s_equal_the_definitions(inputs, apply_sigmoid):
    logits, target = inputs
    assert_score(f_measure(logits, target, apply_sigmoid=apply_sigmoid), ref_f_measure(logits, target, apply_sigmoid))
    assert_score(null_s(logits), ref_null_s(logits))


@FAST
@given(inputs=metric_inputs(nan=True))
def test_nan_logits_are_refused_by_the_benchmark_metrics(inputs):
    """A NaN would otherwise read as "predicts nothing": a perfect score on a frame with an empty ground truth."""
    logits, target = inputs
    assume(torch.isnan(logits).any())
    for score in (
        lambda: mask_iou(logits, target),
        lambda: f_measure(logits, target),
        lambda: f_measure(logits, target, apply_sigmoid=False),
        lambda: null_s(logits),
        lambda: evaluate_clips([logits], [target]),
        lambda: evaluate_clips([logits], [target], protocol="aurora"),
        lambda: evaluate_clips([logits], [target], null=True),
    ):
        with pytest.raises(ValueError, match="logits contain NaN"):
            score()
    # the training-time IoU marks exactly the NaN frames, which the GRPO IoU reward turns into None
    per_frame = frame_iou(logits, target)
    nan_frames = torch.isnan(logits.float()).flatten(1).any(1)
    assert torch.equal(torch.isnan(per_frame), nan_frames)
    expected = [ref_frame_iou(x, t, 0.5) for x, t in zip(logits[~nan_frames], target[~nan_frames])]
    assert per_frame[~nan_frames].tolist() == pytest.approx(expected, abs=1e-5)
    assert math.isnan(clip_iou(logits, target))
    assert REWARD_FUNCS["iou"](["x"], iou=[clip_iou(logits, target)]) == [None]


@fuzz(60)
@given(inputs=metric_inputs(), value=st.sampled_from([NAN, INF, -INF]))
def test_nan_in_a_float_ground_truth_is_refused_and_inf_is_a_mask(inputs, value):
    logits, target = inputs
    target = target.double()
    target.view(-1)[0] = value
    if math.isnan(value):
        for score in (mask_iou, frame_iou, f_measure, clip_iou):
            with pytest.raises(ValueError, match="ground truth contains NaN"):
                score(logits, target)
    else:
        assert_score(mask_iou(logits, target), ref_mean_iou(logits, target, 0.4))


@fuzz(80)
@given(a=shapes(), b=shapes())
def test_mismatched_shapes_are_named(a, b):
    assume(a != b)
    logits, target = torch.zeros(a), torch.zeros(b, dtype=torch.bool)
    message = f"ground truth shape {b} differs from logits shape {a}"
    for score in (mask_iou, frame_iou, f_measure, clip_iou):
        with pytest.raises(ValueError) as err:
            score(logits, target)
        assert message == str(err.value)
    with pytest.raises(ValueError, match="differs from logits shape"):
        evaluate_clips([logits], [target])


@fuzz(40)
@given(shape=st.lists(st.integers(0, 3), min_size=0, max_size=5))
def test_wrong_rank_or_empty_logits_are_refused(shape):
    logits = torch.zeros(shape)
    if len(shape) != 3:
        match = "logits must be \\(frames, H, W\\)"
    elif 0 in shape:
        match = "logits are empty"
    else:
        return
    for score in (lambda: mask_iou(logits, logits), lambda: null_s(logits), lambda: f_measure(logits, logits)):
        with pytest.raises(ValueError, match=match):
            score()


def test_no_clips_is_an_error_not_nan():
    with pytest.raises(ValueError, match="no clips to score"):
        evaluate_clips([], [])


def ref_resize(x):
    """The benchmark's resizing; +-inf stand for certain foreground / background, i.e. any huge logit."""
    x = torch.nan_to_num(x.float(), posinf=1e30, neginf=-1e30)
    return F.interpolate(x[None], size=(REFAVS_SIZE, REFAVS_SIZE), mode="bilinear", align_corners=False)[0]


def check_protocol(clips, protocol, batches, threshold, f_of_batch):
    scores = evaluate_clips([c[0] for c in clips], [c[1] for c in clips], protocol=protocol)
    assert scores["clips"] == len(clips)
    assert_score(scores["J"], sum(ref_mean_iou(x, t, threshold) for x, t in batches) / len(batches))
    assert_score(scores["F"], sum(f_of_batch(x, t) for x, t in batches) / len(batches))
    null = evaluate_clips([c[0] for c in clips], [c[1] for c in clips], null=True, protocol=protocol)
    assert_score(null["S"], sum(ref_null_s(x) for x, _ in batches) / len(batches))


@fuzz(30)
@given(clips=st.lists(metric_inputs(), min_size=1, max_size=5))
def test_evaluate_clips_aurora_protocol_by_hand(clips):
    """AURORA's variant: native size, one clip per batch, J at 0.5, F on raw logits."""
    batches = [(x, t) for x, t in clips]
    check_protocol(clips, "aurora", batches, 0.5, lambda x, t: ref_f_measure(x, t, apply_sigmoid=False))


@fuzz(6)
@given(clips=st.lists(metric_inputs(max_frames=1, nan=False), min_size=1, max_size=5))
def test_evaluate_clips_refavs_protocol_by_hand(clips):
    """The benchmark's: 256 x 256, batches of 4 clips, J at 0.4, F on sigmoids. F's own definition is checked at
    native size above (the 255-threshold reference at 256 x 256 would take minutes)."""
    logits = [ref_resize(x) for x, _ in clips]
    targets = [ref_resize(ref_binary(t).float()) > 0 for _, t in clips]
    batches = [(torch.cat(logits[i : i + 4]), torch.cat(targets[i : i + 4])) for i in range(0, len(clips), 4)]
    check_protocol(clips, "refavs", batches, 0.4, lambda x, t: f_measure(x, t, apply_sigmoid=True))


# ================================================================================================ builder
CLIPS, SIZE = 6, 32
COLUMNS = ["vid", "uid", "split", "fid", "exp"]
# cell text: anything but line breaks (one record per line, as in Ref-AVS) and lone surrogates (not UTF-8)
CELL = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20)
CELL = st.one_of(CELL, st.sampled_from(["", " ", "..", "/abs", "../up", "a/b", "NO.", "[Error] x", "0", "-1", "1e3",
                                         "train", "test_n", "x_null_1", "guitar_1", '"', '""', ",", "\x00"]))  # fmt: skip


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A small synthetic Ref-AVS folder, written once; each example damages a copy."""
    root = tmp_path_factory.mktemp("fuzz_pristine") / "refavs"
    write_synthetic_refavs(root, clips=CLIPS, seed=3, size=SIZE)
    with open(root / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    files = [f for f in files if f.startswith(("media", "gt_mask"))]
    folders = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir())
    return {"root": root, "rows": rows, "files": files, "folders": folders}


def _garble(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


FILE_DAMAGE = {
    "delete": lambda path, rng: path.unlink(),
    "empty": lambda path, rng: path.write_bytes(b""),
    "truncate": lambda path, rng: path.write_bytes(path.read_bytes()[: rng.randrange(max(1, path.stat().st_size))]),
    "garble": lambda path, rng: path.write_bytes(_garble(path.read_bytes(), rng)),
    "random_bytes": lambda path, rng: path.write_bytes(rng.randbytes(rng.randrange(1, 2000))),
    "header_only": lambda path, rng: path.write_bytes(path.read_bytes()[:64]),
    "other_size": lambda path, rng: Image.new("L", (rng.randint(1, 40), rng.randint(1, 40))).save(path, format="PNG"),
    "png_as_jpeg": lambda path, rng: Image.new("RGB", (SIZE, SIZE)).save(path, format="PNG"),
    "directory": lambda path, rng: (path.unlink(), path.mkdir()),
}
STRAY = (
    "10.jpg 10.png 00010.png notes.txt .DS_Store Thumbs.db audio.mp3 a.jpg -1.jpg 01.jpg \u00b2.jpg \u0663.png 9.JPG"
)
STRAY_NAMES = st.one_of(
    st.sampled_from(STRAY.split() + ["frames", "fid_x"]),
    st.text(
        st.characters(whitelist_categories=("L", "N", "P"), blacklist_characters="/\\\x00"), min_size=1, max_size=9
    ),
)


@st.composite
def damage(draw, pristine):
    """A list of damages: to media files, folders and the metadata (cells, duplicates, raw bytes, encoding)."""
    rows, files, folders = pristine["rows"], pristine["files"], pristine["folders"]
    kinds = st.sampled_from(["file", "file", "file", "stray", "rmtree", "cell", "cell", "duplicate", "raw", "layout"])
    out = []
    for kind in draw(st.lists(kinds, min_size=1, max_size=6)):
        if kind == "file":
            out.append(("file", draw(st.sampled_from(sorted(FILE_DAMAGE))), draw(st.sampled_from(files))))
        elif kind == "stray":
            out.append(("stray", draw(st.sampled_from(folders)), draw(STRAY_NAMES), draw(st.booleans())))
        elif kind == "rmtree":
            out.append(("rmtree", draw(st.sampled_from([f for f in folders if f.count("/") in (1, 2)]))))
        elif kind == "cell":
            out.append(("cell", draw(st.integers(0, len(rows) - 1)), draw(st.sampled_from(COLUMNS)), draw(CELL)))
        elif kind == "duplicate":
            out.append(("duplicate", draw(st.integers(0, len(rows) - 1))))
        elif kind == "raw":
            raw = st.sampled_from([b'"', b"\xe9", b"\xff\xfe", b",", b",extra", b'""', b"\x00"])
            out.append(("raw", draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, 60)), draw(raw)))
        else:
            out.append(("layout", draw(st.sampled_from(["bom", "crlf", "blank_lines", "no_final_newline"]))))
    return out, draw(st.integers(0, 2**32 - 1))


def apply_damage(root: Path, rows: list[dict], damages: list, seed: int) -> list[str]:
    """Damage the folder in place; returns the uids of the metadata records as written (the builder's input)."""
    rng = random.Random(seed)
    rows = [dict(r) for r in rows]
    raw_edits, layout = {}, set()
    for d in damages:
        if d[0] == "file":
            path = root / d[2]
            if path.is_file():
                FILE_DAMAGE[d[1]](path, rng)
        elif d[0] == "stray":
            folder = root / d[1]
            if folder.is_dir() and not (folder / d[2]).exists():
                if d[3]:
                    (folder / d[2]).mkdir()
                else:
                    (folder / d[2]).write_bytes(rng.randbytes(rng.randrange(0, 300)))
        elif d[0] == "rmtree":
            shutil.rmtree(root / d[1], ignore_errors=True)
        elif d[0] == "cell":
            rows[d[1]][d[2]] = d[3]
        elif d[0] == "duplicate":
            rows.append(dict(rows[d[1]]))
        elif d[0] == "raw":
            raw_edits.setdefault(d[1], []).append(d[2:])
        else:
            layout.add(d[1])
    lines = []
    for i, row in enumerate(rows):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([row[c] for c in COLUMNS])
        line = buf.getvalue().encode("utf-8")
        exp_at = len(line) - len(_csv_cell(row["exp"]).encode("utf-8"))  # raw bytes go into the expression
        for offset, data in raw_edits.get(i, []):
            at = exp_at + min(offset, len(line) - exp_at)
            line = line[:at] + data + line[at:]
        lines.append(line)
    newline = b"\r\n" if "crlf" in layout else b"\n"
    header = ",".join(COLUMNS).encode()
    body = [header]
    for line in lines:
        body.append(line)
        if "blank_lines" in layout:
            body.append(b"")
    data = newline.join(body) + (b"" if "no_final_newline" in layout else newline)
    (root / "metadata.csv").write_bytes((b"\xef\xbb\xbf" if "bom" in layout else b"") + data)
    # The uid of each record as the builder reports it: stripped, undecodable bytes shown as U+FFFD. Raw bytes
    # only go into the expression (last cell), so a record's uid is the one written.
    return [row["uid"].strip() for row in rows]


def _csv_cell(text: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([text])
    return buf.getvalue()


@fuzz(20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_folder_every_record_in_the_data_set_or_skipped_once(pristine, tmp_path_factory, data):
    damages, seed = data.draw(damage(pristine))
    work = tmp_path_factory.mktemp("fuzz_case")
    root = work / "refavs"
    shutil.copytree(pristine["root"], root)
    uids_in = apply_damage(root, pristine["rows"], damages, seed)

    report = build_dataset(root, work / "out", stage1=root / "stage1_cot.json")

    dataset = load_from_disk(str(work / "out"))
    uids_out = [u for split in dataset.values() for u in split["uid"]]
    skipped = [s["uid"] for s in report["skipped"]]
    assert Counter(uids_in) == Counter(uids_out) + Counter(skipped), damages
    assert len(uids_in) == len(uids_out) + len(skipped), damages
    for name, counts in report["splits"].items():
        assert counts["in"] == counts["out"] + counts["skipped"], (name, counts, damages)
    assert sum(c["in"] for c in report["splits"].values()) == len(uids_in)
    for split in dataset.values():  # what was kept is whole: 10 frames, 10 masks, audio
        for row in split.select(range(min(2, len(split)))):
            assert len(row["images"]) == len(row["masks"]) == 10 and row["audio"]


# ---- what the fuzzer found in the builder, pinned as plain tests
def _metadata(tmp_path, text: str, encoding="utf-8") -> Path:
    path = tmp_path / "metadata.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_an_unclosed_quote_does_not_swallow_the_rows_after_it(tmp_path):
    """Parsed as one CSV stream, the quote made the rest of the file one expression: v2 was in neither the data set
    nor the skip report."""
    text = 'vid,uid,split,fid,exp\nv1,v1_cat_1,train,0,"The cat.\nv2,v2_dog_1,train,0,The dog.\n'
    rows, skipped = read_metadata(_metadata(tmp_path, text))
    assert [(r.uid, r.expression, r.line) for r in rows] == [("v1_cat_1", "The cat.", 2), ("v2_dog_1", "The dog.", 3)]
    assert skipped == []


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    """A spreadsheet's UTF-8 export starts with a BOM; the header read `\\ufeffvid` and the build stopped."""
    rows, _ = read_metadata(_metadata(tmp_path, "\ufeffvid,uid,split,fid,exp\r\nv1,v1_cat_1,train,0,The cat.\r\n"))
    assert [r.vid for r in rows] == ["v1"]


@pytest.mark.parametrize("vid", ["/abs", "../up", "a/b", "..", "a\\b", "v\x00"])
def test_a_vid_that_is_not_a_folder_name_is_skipped(tmp_path, vid):
    """`/abs` made `Path.relative_to` raise out of the builder, `../up` read media outside the Ref-AVS folder."""
    line = _csv_cell(vid) + ",v1_cat_1,train,0,The cat."
    rows, skipped = read_metadata(_metadata(tmp_path, "vid,uid,split,fid,exp\n" + line + "\n"))
    assert rows == [] and [s["reason"] for s in skipped] == [f"vid {vid!r} is not a folder name"]


def test_an_unreadable_frame_is_a_bad_row_and_odd_digits_are_not_frames(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(10):
        Image.new("RGB", (8, 8)).save(frames / f"{t}.jpg")
    (frames / "\u00b2.jpg").write_bytes(b"x")  # str.isdigit("²") is True, int("²") raises
    (frames / "\u0663.jpg").write_bytes(b"x")  # an Arabic-Indic 3
    assert len(read_frames(frames)[0]) == 10
    (frames / "3.jpg").unlink()
    (frames / "3.jpg").mkdir()  # read_bytes raised IsADirectoryError out of the builder
    with pytest.raises(BadRow, match="unreadable frame 3.jpg"):
        read_frames(frames)
