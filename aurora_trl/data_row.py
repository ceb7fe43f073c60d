"""The data row: one referring expression about one clip, as every part of the toolkit stores and reads it.

This module is the single home of the row's columns (`FEATURES`, documented in data_prep/README.md: keep both in
step), of the clip's constants (frames per clip, the audio's sample rate) and of the conversions between a row's
stored values and what a model takes: WAV bytes to a waveform and back, an audio file to a 16 kHz mono waveform,
PNG masks to a tensor. The data-set builders, the trainers, evaluation, prediction and the demo all read it; of
the package it imports only `aurora_trl.text` (the prompt's frame count).
"""

import io
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from datasets import Features, Image, List, Value
from PIL import Image as PILImage

from aurora_trl.text import NUM_FRAMES  # noqa: F401  (the clip's other constant, defined with the prompt)


# Ref-AVS clips have ten seconds of audio (and NUM_FRAMES frames, one a second); the models hear it at 16 kHz.
SAMPLE_RATE = 16_000

PROMPT_FEATURE = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
FEATURES = Features(
    {
        "uid": Value("string"),
        "vid": Value("string"),
        "split": Value("string"),
        "fid": Value("int32"),
        "class_name": Value("string"),
        "is_null": Value("bool"),
        "expression": Value("string"),
        "images": List(Image()),
        "audio": Value("binary"),
        "masks": List(Image()),
        "annotated": List(Value("bool")),
        "reasoning": Value("string"),
        "reflective": Value("string"),
        "prompt": PROMPT_FEATURE,
    }
)
# What each column holds (the data set card's schema table).
COLUMN_DOCS = {
    "uid": "Ref-AVS uid (`{vid}_{class}_{k}`), unique in the data set",
    "vid": "video id",
    "split": "train, val, test_s, test_u or test_n",
    "fid": "object id: the `gt_mask/{vid}/fid_{fid}` folder",
    "class_name": "class from the uid; `null` for null rows",
    "is_null": "the expression refers to nothing in the clip",
    "expression": "referring expression, whitespace normalised",
    "images": "the clip's frames, JPEG bytes as in the source",
    "audio": "16 kHz mono 16-bit WAV bytes",
    "masks": "one 0/255 PNG per frame, frame-sized; all zero for null rows",
    "annotated": "per frame, whether its mask is ground truth (every Ref-AVS frame; AVSBench S4 training: the first)",
    "reasoning": 'Stage-1 CoT path; "" when the row has none',
    "reflective": 'Stage-2 reflective path; "" when the row has none',
    "prompt": "`aurora_trl.text.build_prompt` of the expression: what TRL's GRPO reads",
}


class AudioError(ValueError):
    """Audio that cannot be used (missing, corrupt, empty, non-finite); the message says which and why."""


# ---------------------------------------------------------------------------------------------- audio
def decode_audio(wav_bytes: bytes) -> np.ndarray:
    """A row's audio (its WAV bytes) as a 16 kHz mono float32 waveform."""
    wave, rate = sf.read(io.BytesIO(wav_bytes), dtype="float32")
    if rate != SAMPLE_RATE:
        raise ValueError(f"audio at {rate} Hz: the data set stores 16 kHz (rebuild it with `aurora-trl data build`)")
    return wave


def encode_audio(wave: np.ndarray) -> bytes:
    """A 16 kHz mono waveform as a row stores it: 16-bit WAV bytes (samples clipped to [-1, 1])."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def load_waveform(path: str | Path) -> np.ndarray:
    """An audio file (any rate or channel count soundfile reads) as a 16 kHz mono float32 waveform; `AudioError`
    with the reason for a missing, corrupt, empty or non-finite file."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"missing audio {path.parent.name}/{path.name}")
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        reason = (str(err) or type(err).__name__).splitlines()[0][:120]
        raise AudioError(f"corrupt audio {path.name}: {reason}") from None
    if wave.shape[0] == 0:
        raise AudioError(f"empty audio {path.name}")
    return to_model_rate(wave.mean(axis=1), int(rate), path.name)


def to_model_rate(wave: np.ndarray, rate: int, name: str = "audio") -> np.ndarray:
    """A mono waveform resampled to 16 kHz (polyphase, exact for integer rate ratios); `AudioError` when it holds
    NaN or infinite samples."""
    from scipy.signal import resample_poly

    if rate != SAMPLE_RATE:
        g = gcd(rate, SAMPLE_RATE)
        wave = resample_poly(wave, SAMPLE_RATE // g, rate // g)
    if not np.isfinite(wave).all():
        raise AudioError(f"{name} holds NaN or infinite samples")
    return wave.astype(np.float32)


# ---------------------------------------------------------------------------------------------- frames and masks
def as_image(value) -> PILImage.Image:
    """A data-set image as PIL: decoded already, or its stored bytes / file (a column read with `decode=False`)."""
    if isinstance(value, PILImage.Image):
        return value
    return PILImage.open(io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"])


def encode_mask(mask: np.ndarray) -> bytes:
    """A boolean mask as a row stores it: a 0/255 grey PNG."""
    buf = io.BytesIO()
    PILImage.fromarray(np.asarray(mask).astype(np.uint8) * 255, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def mask_tensor(masks) -> torch.Tensor:
    """(T, H, W) float {0, 1} from the data set's mask images (anything above 0 is foreground, as Ref-AVS reads
    them)."""
    return torch.from_numpy(np.stack([np.asarray(as_image(m).convert("L")) > 0 for m in masks])).float()


def annotated_frames(row: dict, frames: int) -> torch.Tensor:
    """`(T,)` booleans: which frames of a row carry a ground-truth mask; all of them for a row without the column (a
    data set built before it existed). The losses and metrics score only these frames."""
    flags = row.get("annotated")
    if not flags:
        return torch.ones(frames, dtype=torch.bool)
    if len(flags) != frames:
        raise ValueError(f"row {row.get('uid')}: {len(flags)} annotated flags for {frames} frames")
    return torch.tensor(flags, dtype=torch.bool)


def clip_id(row: dict) -> str | None:
    """The clip a row is about (its video id; its uid when it has none): what SAM's embeddings are cached by."""
    return row.get("vid") or row.get("uid")
