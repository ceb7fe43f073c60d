"""`aurora-trl predict`: one clip through a model: the reasoning, a mask per frame, and overlays.

    aurora-trl predict --model DIR (--frames DIR | --video FILE) [--audio FILE] --expression TEXT --out DIR

Frames come from a folder of images (natural order: `2.jpg` before `10.jpg`) or are sampled from a video, one
from the middle of each of `--num-frames` equal spans (Ref-AVS clips are 10 s at one frame per second). Audio is
read from `--audio`, or else from the video's sound track; it is resampled to 16 kHz mono. Decoding a video needs
PyAV (`pip install "aurora-trl[video]"`): torchvision's decoder is not an option on every machine. Written to `--out`:

    reasoning.txt        the model's answer (its reasoning, ending with `It is [SEG].`)
    masks/NN.png         the predicted mask of frame NN, white = object, at the frame's size
    overlay.png          the frames side by side with the mask tinted red
    overlay.gif          the same, animated
    prediction.json      expression, answer, whether the model emitted [SEG], mask area per frame
"""

import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from aurora_trl.apps.visualize import mask_image, overlay_strip, save_overlay_gif
from aurora_trl.data_row import NUM_FRAMES, SAMPLE_RATE, AudioError, load_waveform, to_model_rate
from aurora_trl.text import MAX_ANSWER_TOKENS


logger = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class InputError(ValueError):
    """An input file or folder that cannot be used; the message says which and why."""


@dataclass
class Prediction:
    """One clip's result: the frames used, the answer text and the `(T, H, W)` mask logits."""

    expression: str
    frames: list
    text: str
    mask_logits: torch.Tensor
    seg_emitted: bool

    def save(self, out: Path) -> dict:
        """Write the files listed in the module doc to `out`; returns the `prediction.json` content."""
        out = Path(out)
        (out / "masks").mkdir(parents=True, exist_ok=True)
        (out / "reasoning.txt").write_text(self.text + "\n", encoding="utf-8")
        for index, logits in enumerate(self.mask_logits):
            mask_image(logits).save(out / "masks" / f"{index:02d}.png")
        overlay_strip(self.frames, self.mask_logits).save(out / "overlay.png")
        save_overlay_gif(self.frames, self.mask_logits, out / "overlay.gif")
        summary = {
            "expression": self.expression,
            "answer": self.text,
            "seg_emitted": self.seg_emitted,
            "mask_area": [float((m > 0).float().mean()) for m in self.mask_logits],
        }
        (out / "prediction.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
        return summary


def load_frames(folder, num_frames: int | None = None) -> list[Image.Image]:
    """The images of a folder in natural name order, as RGB; all must share one size."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"frames folder {folder} does not exist")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    if num_frames is not None and len(files) != num_frames:
        raise InputError(f"expected {num_frames} frames in {folder}, found {len(files)}")
    return _same_size([_open_image(p) for p in files], str(folder))


def load_video(path, num_frames: int = NUM_FRAMES) -> tuple[list[Image.Image], np.ndarray | None]:
    """`num_frames` frames sampled at the middle of equal spans of the video, and its sound track (16 kHz mono,
    `None` when it has none)."""
    av = _import_av()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {path} does not exist")
    try:
        # Two passes keep memory flat for long videos: count the frames, then keep only the sampled ones.
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path.name} has no video stream")
            total = sum(1 for _ in container.decode(video=0))
        if total == 0:
            raise InputError(f"{path.name} holds no decodable frames")
        # Sampling over decoded frames (not timestamps) works for variable frame rates and broken time bases.
        picks = [min(total - 1, int((i + 0.5) * total / num_frames)) for i in range(num_frames)]
        frames = []
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                frames += [frame.to_image().convert("RGB")] * picks.count(index)
    except av.FFmpegError as err:
        raise InputError(f"cannot decode the video {path.name}: {err}") from None
    return frames, _video_audio(av, path)


def load_audio(path) -> np.ndarray:
    """An audio file (WAV, FLAC, OGG, ...) as a 16 kHz mono float32 waveform."""
    try:
        return load_waveform(Path(path))
    except AudioError as err:
        raise InputError(str(err)) from None


def predict_clip(
    model, processor, frames, audio, expression: str, max_new_tokens: int = MAX_ANSWER_TOKENS, **generate_kwargs
) -> Prediction:
    """Run `model.segment` on one clip and keep what the outputs need."""
    if not expression.strip():
        raise InputError("the expression is empty")
    extractor = processor.feature_extractor  # its length is the `audio_seconds` the model was trained with
    if audio is not None and len(audio) > extractor.n_samples:
        logger.warning(
            "the audio is %.1f s long: the model hears its first %g s (the frames span the whole clip)",
            len(audio) / extractor.sampling_rate,
            extractor.n_samples / extractor.sampling_rate,
        )
    with torch.no_grad():
        out = model.segment(
            frames, audio, expression, processor=processor, max_new_tokens=max_new_tokens, **generate_kwargs
        )
    return Prediction(expression, list(frames), out.text, out.mask_logits.float().cpu(), bool(out.seg_emitted))


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"cannot read the image {path.name}: {err}") from None


def _same_size(frames: list[Image.Image], where: str) -> list[Image.Image]:
    sizes = sorted({f.size for f in frames})
    if len(sizes) > 1:
        raise InputError(f"frames of {where} differ in size ({', '.join(f'{w}x{h}' for w, h in sizes)})")
    return frames


def _import_av():
    try:
        import av
    except ImportError:
        raise InputError('reading a video needs PyAV: pip install "aurora-trl[video]" (or pass --frames)') from None
    return av


def _video_audio(av, path: Path) -> np.ndarray | None:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate or SAMPLE_RATE)
        chunks = [
            resampled.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for resampled in resampler.resample(frame)
        ]
        rate = stream.rate or SAMPLE_RATE
    if not chunks:
        return None
    try:
        return to_model_rate(np.concatenate(chunks), int(rate), f"the sound track of {path.name}")
    except AudioError as err:
        raise InputError(str(err)) from None


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="AURORA model folder (or Hub id)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--frames", help="folder of the clip's frames (any of .jpg .png .webp ...)")
    source.add_argument("--video", help="video file; frames are sampled from it (needs PyAV)")
    parser.add_argument("--audio", help="audio file; default: the video's sound track (none for --frames)")
    parser.add_argument("--expression", required=True, help='the referring expression, e.g. "the dog barking first"')
    parser.add_argument("--num-frames", type=int, default=NUM_FRAMES, help="frames sampled from --video")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_ANSWER_TOKENS, help="answer length limit (AURORA's)")
    parser.add_argument("--out", required=True, help="folder for reasoning.txt, masks/, overlay.png/.gif")


def load_model(name_or_path: str):
    """`(model, processor)` of an AURORA checkpoint, in eval mode; `InputError` when it cannot be loaded."""
    from aurora_trl.modeling import AuroraForSegmentation, load_processor

    try:
        return AuroraForSegmentation.from_pretrained(name_or_path).eval(), load_processor(name_or_path)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load the model {name_or_path}: {str(err).splitlines()[0]}") from None


def run(args) -> int:
    try:
        if not args.expression.strip():  # before the slow parts: reading the video, loading the model
            raise InputError("the expression is empty")
        if args.video:
            frames, audio = load_video(args.video, args.num_frames)
        else:
            frames, audio = load_frames(args.frames), None
        if args.audio:
            audio = load_audio(args.audio)
        model, processor = load_model(args.model)
        prediction = predict_clip(model, processor, frames, audio, args.expression, max_new_tokens=args.max_new_tokens)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    prediction.save(Path(args.out))
    print(prediction.text)
    print(f"masks and overlays: {args.out}")
    return 0
