"""A synthetic twin of AVSBench in its own layout: small, offline, and learnable like the Ref-AVS one.

    aurora-trl data synth --layout avsbench-s4 --out DIR [--clips N] [--seed S] [--size PX]

Each clip is the Ref-AVS twin's scene (coloured shapes, each class with its own shape and its own sound), 5 frames
(one a second) and 5 s of audio. In S4 one object sounds for the whole clip and the others are silent; in MS3 two
objects sound and the rest are silent. So which object is "the sounding object" can be told only from the audio.
The ground truth is the sounding object's mask (MS3: the union of the sounding objects'). S4 training clips carry
the first frame's mask only, as AVSBench's do.

Layout, as AVSBench's official loaders read it (`{subset}_meta_data.csv` with a `split` column; column 0 the video
name, S4's column 2 its category):

    S4:  visual_frames/{split}/{category}/{name}/{name}_{i}.png   gt_masks/{split}/{category}/{name}/{name}_{i}.png
         audio_wav/{split}/{category}/{name}.wav
    MS3: visual_frames/{name}/{name}.mp4_{i}.png                  gt_masks/{split}/{name}/{name}_{i}.png
         audio_wav/{split}/{name}.wav
"""

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from aurora_trl.data_row import SAMPLE_RATE, decode_audio, encode_audio, encode_mask
from data_prep.synth import make_scene, render_clip


AVSBENCH_FRAMES = 5
SUBSETS = ("s4", "ms3")
SPLIT_SHARES = (("train", 0.6), ("val", 0.2), ("test", 0.2))


def metadata_name(subset: str) -> str:
    return f"{subset}_meta_data.csv"


def media_paths(subset: str, split: str, name: str, category: str = "") -> tuple[list[str], list[str], str]:
    """`(frame paths, mask paths, audio path)` of a clip, relative to the subset's root (see the module docstring)."""
    frames = range(1, AVSBENCH_FRAMES + 1)
    if subset == "s4":
        folder = f"{split}/{category}/{name}"
        images = [f"visual_frames/{folder}/{name}_{i}.png" for i in frames]
        return (
            images,
            [f"gt_masks/{folder}/{name}_{i}.png" for i in frames],
            f"audio_wav/{split}/{category}/{name}.wav",
        )
    images = [f"visual_frames/{name}/{name}.mp4_{i}.png" for i in frames]
    return images, [f"gt_masks/{split}/{name}/{name}_{i}.png" for i in frames], f"audio_wav/{split}/{name}.wav"


def _sounding_scene(rng: np.random.Generator, sounding: int) -> list:
    """A Ref-AVS twin scene with `sounding` objects heard for the whole clip and the others silent."""
    objects = make_scene(rng, "train")
    while len(objects) <= sounding:
        objects = make_scene(rng, "train")
    for index, obj in enumerate(objects):
        obj.onset, obj.offset = (0, AVSBENCH_FRAMES) if index < sounding else (None, None)
    order = rng.permutation(len(objects))  # the sounding objects anywhere in the frame
    return [objects[i] for i in order]


def _png(image_bytes: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(image_bytes)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_synthetic_avsbench(out: str | Path, subset: str = "s4", clips: int = 20, seed: int = 0, size: int = 64):
    """Write a synthetic AVSBench subset (`"s4"` or `"ms3"`) to `out`; returns the clips per split."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    if clips < len(SPLIT_SHARES) or size < 24:
        raise ValueError(f"need at least {len(SPLIT_SHARES)} clips and a frame size of at least 24 px")
    out, rng = Path(out), np.random.default_rng(seed)
    counts = [round(share * clips) for _, share in SPLIT_SHARES]
    counts[0] = clips - sum(counts[1:])
    splits = [name for (name, _), n in zip(SPLIT_SHARES, counts) for _ in range(n)]
    rows = []
    for index, split in enumerate(splits):
        objects = _sounding_scene(rng, 1 if subset == "s4" else 2)
        frames, masks, audio = render_clip(objects, size, rng)
        sounding = [i for i, obj in enumerate(objects) if obj.onset is not None]
        name = f"avs{seed}{subset}c{index:04d}"
        category = objects[sounding[0]].class_name
        images, mask_paths, audio_path = media_paths(subset, split, name, category)
        for t, path in enumerate(images):
            _write(out / path, _png(frames[t]))
        for t, path in enumerate(mask_paths):
            if subset == "s4" and split == "train" and t > 0:
                break  # S4 training clips: the first frame's mask only
            union = np.zeros((size, size), dtype=bool)
            for i in sounding:
                union |= np.asarray(Image.open(io.BytesIO(masks[i][t]))) > 0
            _write(out / path, encode_mask(union))
        _write(out / audio_path, encode_audio(decode_audio(audio)[: AVSBENCH_FRAMES * SAMPLE_RATE]))
        rows.append([name, f"src{index}", category, split] if subset == "s4" else [name, f"src{index}", split])
    header = ["name", "source", "category", "split"] if subset == "s4" else ["name", "source", "split"]
    with open(out / metadata_name(subset), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return {name: n for (name, _), n in zip(SPLIT_SHARES, counts)}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def run(args) -> int:
    """`aurora-trl data synth --layout avsbench-s4|avsbench-ms3` (the options of `data_prep.synth`)."""
    subset = args.layout.split("-")[1]
    counts = write_synthetic_avsbench(args.out, subset, clips=args.clips, seed=args.seed, size=args.size)
    print(
        f"wrote {args.clips} {subset.upper()} clips to {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    return 0
