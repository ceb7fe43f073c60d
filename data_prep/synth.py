"""Synthetic Ref-AVS clips: the embedded default data set of tests, tiny recipes and the quickstart.

A clip is 10 frames (1 per second) and 10 s of 16 kHz mono audio. It shows two or three objects, each of a named
class, in distinct horizontal slots. A class has a fixed *shape* (what the frames show) and a fixed *timbre* (what
the audio sounds like); each object also gets a clip-specific colour, pitch band and sounding interval. Expressions
refer to the target through

- vision ("The red object.", "The object on the left."),
- audio ("The object making the lowest sound.", "The object that does not make any sound."),
- time ("The first object to make a sound."),

so audio- and time-referenced rows can only be solved by hearing which timbre is lowest or first, mapping the
timbre to a class, and finding that class's shape in the frames. Splits follow Ref-AVS: train and val and test_s
use the seen classes, test_u targets classes absent from train, and test_n rows refer to nothing in the clip.

Output (the exact Ref-AVS layout, plus the annotation dumps the builder reads):

    metadata.csv                         vid, uid, split, fid, exp
    media/{vid}/frames/0.jpg .. 9.jpg    (null-only clips alternate between `{vid}` and `null_c-{vid}` folders)
    media/{vid}/audio.wav
    gt_mask/{vid}/fid_{fid}/00000.png .. 00009.png   (0/255)
    stage1_cot.json                      JSON list of {"uid", "reasoning"} in shuffled order (train and val)
    stage2_reflective.jsonl              JSON lines of {"uid", "y_wrong", "y_correct", "reflective"} (about half)
    scenes.jsonl                         what was drawn and heard, for debugging and tests
"""

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from aurora_trl.data_row import NUM_FRAMES, SAMPLE_RATE, encode_audio, encode_mask
from aurora_trl.text import NULL_CLASS, format_cot
from data_prep.reflect import build_reflective


SECONDS = 10
# class -> (shape, timbre words used in the CoT). The last two are "unseen": they appear only in test_u, as tuba
# and lion do in the real benchmark.
CLASSES = {
    "guitar": ("circle", "plucked"),
    "piano": ("square", "ringing"),
    "violin": ("triangle", "bowed"),
    "dog": ("diamond", "barking"),
    "flute": ("vbar", "whistling"),
    "drum": ("ring", "drumming"),
    "tuba": ("hbar", "buzzing brass"),
    "lion": ("cross", "growling"),
}
UNSEEN_CLASSES = ("tuba", "lion")
SEEN_CLASSES = tuple(c for c in CLASSES if c not in UNSEEN_CLASSES)
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 230),
    "yellow": (230, 210, 40),
    "white": (235, 235, 235),
    "purple": (160, 60, 200),
}
SLOTS = ("left", "center", "right")
SLOT_PHRASE = {"left": "on the left", "center": "in the center", "right": "on the right"}
PITCH_BANDS = {"low": (110.0, 160.0), "middle": (260.0, 380.0), "high": (620.0, 900.0)}
SPLIT_SHARES = (("train", 0.6), ("val", 0.1), ("test_s", 0.1), ("test_u", 0.1), ("test_n", 0.1))


@dataclass
class SceneObject:
    class_name: str
    color: str
    slot: str
    pitch: str  # low / middle / high
    f0: float
    onset: int | None  # first sounding second; None = silent
    offset: int | None  # first silent second after sounding


# ---------------------------------------------------------------------------------------------- expressions
def candidate_expressions(objects: list[SceneObject]) -> list[dict]:
    """Every expression that picks exactly one object of the scene: {template, text, cue, target, modality}.

    The cue is the expression's key words, as the short CoT's reference step quotes them.
    """
    sounding = [i for i, o in enumerate(objects) if o.onset is not None]
    silent = [i for i, o in enumerate(objects) if o.onset is None]
    out = []

    def add(template, text, cue, target, modality):
        out.append({"template": template, "text": text, "cue": cue, "target": target, "modality": modality})

    if len(sounding) >= 2:
        by_onset = sorted(sounding, key=lambda i: objects[i].onset)
        add("first_sound", "The first object to make a sound.", "first sound", by_onset[0], "time")
        add("last_sound", "The last object to start making a sound.", "last sound", by_onset[-1], "time")
        by_pitch = sorted(sounding, key=lambda i: objects[i].f0)
        add("lowest_sound", "The object making the lowest sound.", "lowest sound", by_pitch[0], "audio")
        add("highest_sound", "The object making the highest-pitched sound.", "highest sound", by_pitch[-1], "audio")
    if len(sounding) == 1:
        add("only_sound", "The sounding object.", "only sound", sounding[0], "audio")
    if len(silent) == 1 and sounding:
        add("silent", "The object that does not make any sound.", "no sound", silent[0], "audio")
    for i, o in enumerate(objects):
        add("color", f"The {o.color} object.", f"{o.color} object", i, "vision")
        add("slot", f"The object {SLOT_PHRASE[o.slot]}.", f"object {o.slot}", i, "vision")
        add(
            "class_slot",
            f"The {o.class_name} {SLOT_PHRASE[o.slot]}, whatever its colour.",
            f"{o.class_name} {o.slot}",
            i,
            "vision",
        )
    return out


def null_expressions(objects: list[SceneObject], rng: np.random.Generator) -> list[tuple[str, str]]:
    """(expression, cue) pairs that refer to nothing in the scene (Ref-AVS's null rows), each close to a real one:
    an absent colour or class, a class in a slot it is not in, a third sound that is not there."""
    colors = [c for c in COLORS if c not in {o.color for o in objects}]
    # Only seen classes: a null row about a class that test_u shows would teach the unseen class as "nothing".
    classes = [c for c in SEEN_CLASSES if c not in {o.class_name for o in objects}]
    color, class_name = str(rng.choice(colors)), str(rng.choice(classes))
    texts = [(f"The {color} object.", f"{color} object"), (f"The {class_name} in the video.", class_name)]
    elsewhere = [
        (o, s) for o in objects for s in SLOTS if s not in {p.slot for p in objects if p.class_name == o.class_name}
    ]
    if elsewhere:
        o, slot = elsewhere[int(rng.integers(len(elsewhere)))]
        texts.append((f"The {o.class_name} {SLOT_PHRASE[slot]}, whatever its colour.", f"{o.class_name} {slot}"))
    if sum(o.onset is not None for o in objects) < 3:
        texts.append(("The third object to make a sound.", "third sound"))
    return texts


# ---------------------------------------------------------------------------------------------- scenes
def make_scene(rng: np.random.Generator, split: str) -> list[SceneObject]:
    n = int(rng.integers(2, 4))
    classes = list(rng.choice(SEEN_CLASSES, size=n, replace=False))
    if split == "test_u":
        classes[0] = str(rng.choice(UNSEEN_CLASSES))
    colors = rng.choice(list(COLORS), size=n, replace=False)
    slots = rng.choice(SLOTS, size=n, replace=False)
    pitches = rng.choice(list(PITCH_BANDS), size=n, replace=False)
    onsets = rng.choice(7, size=n, replace=False)
    silent = int(rng.integers(n)) if n == 3 and rng.random() < 0.4 else -1
    objects = []
    for i in range(n):
        lo, hi = PITCH_BANDS[pitches[i]]
        onset = None if i == silent else int(onsets[i])
        offset = None if onset is None else int(min(SECONDS, onset + rng.integers(2, 7)))
        objects.append(
            SceneObject(
                str(classes[i]),
                str(colors[i]),
                str(slots[i]),
                str(pitches[i]),
                float(rng.uniform(lo, hi)),
                onset,
                offset,
            )
        )
    return objects


def object_mask(obj: SceneObject, size: int, t: int, bob: float) -> np.ndarray:
    """Boolean mask of one object at frame t: a class-specific shape in its slot, bobbing vertically."""
    cx = (SLOTS.index(obj.slot) + 0.5) * size / 3
    cy = size / 2 + bob * np.sin(t * 0.9 + cx)
    r = size / 8
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    shape = CLASSES[obj.class_name][0]
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (abs(dx) <= r * 0.85) & (abs(dy) <= r * 0.85)
    if shape == "triangle":
        return (dy <= r * 0.8) & (dy >= -r) & (abs(dx) <= (dy + r) * 0.6)
    if shape == "diamond":
        return abs(dx) + abs(dy) <= r
    if shape == "vbar":
        return (abs(dx) <= r * 0.35) & (abs(dy) <= r)
    if shape == "hbar":
        return (abs(dx) <= r) & (abs(dy) <= r * 0.35)
    if shape == "ring":
        return (dx**2 + dy**2 <= r**2) & (dx**2 + dy**2 >= (0.55 * r) ** 2)
    if shape == "cross":
        return ((abs(dx) <= r * 0.3) & (abs(dy) <= r)) | ((abs(dy) <= r * 0.3) & (abs(dx) <= r))
    raise ValueError(shape)


def object_sound(obj: SceneObject, rng: np.random.Generator) -> np.ndarray:
    """The object's waveform over the whole clip: its class timbre at its pitch, during its sounding seconds."""
    t = np.arange(SAMPLE_RATE * SECONDS) / SAMPLE_RATE
    wave = np.zeros_like(t)
    if obj.onset is None:
        return wave
    f0, timbre = obj.f0, CLASSES[obj.class_name][1]
    phase = 2 * np.pi * f0 * t
    if timbre == "plucked":  # decaying harmonics, re-plucked every half second
        wave = sum(np.sin(k * phase) / k for k in (1, 2, 3)) * np.exp(-6 * (t % 0.5))
    elif timbre == "ringing":
        wave = (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.3 * np.sin(4 * phase)) * np.exp(-2 * (t % 1.0))
    elif timbre == "bowed":  # sawtooth-like
        wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    elif timbre == "barking":  # noisy bursts
        wave = rng.standard_normal(t.size) * np.sin(phase) * ((t * 3) % 1 < 0.3)
    elif timbre == "whistling":
        wave = np.sin(phase)
    elif timbre == "drumming":
        wave = rng.standard_normal(t.size) * np.exp(-25 * (t % 0.25)) * (0.3 + 0.7 * np.sin(phase / 4) ** 2)
    elif timbre == "buzzing brass":  # square-ish
        wave = np.sign(np.sin(phase)) * 0.6
    elif timbre == "growling":
        wave = rng.standard_normal(t.size) * (0.5 + 0.5 * np.sin(phase))
    on = (t >= obj.onset) & (t < obj.offset)
    return wave * on / (np.abs(wave).max() + 1e-9)


def render_clip(objects: list[SceneObject], size: int, rng: np.random.Generator):
    """JPEG bytes of the 10 frames, PNG bytes of each object's 10 masks, WAV bytes of the audio."""
    background = rng.integers(20, 90, size=3)
    bob = size / 24
    frames, masks = [], [[] for _ in objects]
    for t in range(NUM_FRAMES):
        img = np.empty((size, size, 3), np.float32)
        img[:] = background
        img += rng.normal(0, 6, img.shape)
        for i, obj in enumerate(objects):
            m = object_mask(obj, size, t, bob)
            img[m] = COLORS[obj.color]
            masks[i].append(encode_mask(m))
        frames.append(_jpeg(np.clip(img, 0, 255).astype(np.uint8)))
    audio = sum(object_sound(o, rng) for o in objects) + rng.normal(0, 0.01, SAMPLE_RATE * SECONDS)
    return frames, masks, encode_audio(0.8 * audio / (np.abs(audio).max() + 1e-9))


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- CoT text
def scene_cot(objects: list[SceneObject], cue: str, target: int | None) -> str:
    """The canonical 4-step CoT for one row, in short phrases (`target=None` for a null row), e.g.

    Step 1 (image): red guitar left, blue dog right. Step 2 (audio): guitar low from 2, dog high from 5.
    Step 3 (reference): first sound, the red guitar left. Step 4 (answer): The target is guitar.

    Short, so that a whole answer fits a tiny model's sampling budget: GRPO's rewards need rollouts that reach
    their own `It is [SEG].`.
    """
    image = ", ".join(f"{o.color} {o.class_name} {o.slot}" for o in sorted(objects, key=lambda o: SLOTS.index(o.slot)))
    sounding = sorted((o for o in objects if o.onset is not None), key=lambda o: o.onset)
    heard = [f"{o.class_name} {o.pitch} from {o.onset}" for o in sounding]
    heard += [f"{o.class_name} silent" for o in objects if o.onset is None]
    if target is None:
        return format_cot(f"{image}.", f"{', '.join(heard)}.", f"{cue}, nothing matches.", NULL_CLASS)
    o = objects[target]
    return format_cot(
        f"{image}.", f"{', '.join(heard)}.", f"{cue}, the {o.color} {o.class_name} {o.slot}.", o.class_name
    )


# ---------------------------------------------------------------------------------------------- writer
def assign_splits(clips: int, rng: np.random.Generator) -> list[str]:
    counts = [max(1, round(share * clips)) if clips >= len(SPLIT_SHARES) else 0 for _, share in SPLIT_SHARES]
    counts[0] = clips - sum(counts[1:])
    splits = [name for (name, _), n in zip(SPLIT_SHARES, counts) for _ in range(n)]
    rng.shuffle(splits)
    return splits


def write_synthetic_refavs(
    out: str | Path, clips: int = 100, seed: int = 0, size: int = 64, show_progress: bool = False
) -> dict:
    """Write a synthetic Ref-AVS folder; same `seed` -> identical bytes. Returns row counts per split."""
    out = Path(out)
    if clips < 1 or size < 24:
        raise ValueError("need at least 1 clip and a frame size of at least 24 px")
    rng = np.random.default_rng(seed)
    splits = assign_splits(clips, rng)
    metadata, cot, scenes = [], [], []
    stage1_outputs, corrected = {}, {}
    for idx in tqdm(range(clips), desc="synthetic clips", disable=not show_progress):
        split = splits[idx]
        objects = make_scene(rng, split)
        vid = f"syn{seed}c{idx:05d}_{idx * 10000}_{idx * 10000 + 10000}"
        rows = _clip_rows(objects, split, vid, rng)
        frames, masks, audio = render_clip(objects, size, rng)
        media_name = vid
        if split == "test_n" and idx % 2:  # exercise the official loader's naming for null clips
            media_name = rows[0]["uid"].rsplit("_", 2)[0]
        _write_clip(out, media_name, vid, frames, masks, audio)
        for row in rows:
            target, cue = row.pop("target"), row.pop("cue")
            row.pop("template")
            metadata.append(row)
            if split in ("train", "val"):
                text = scene_cot(objects, cue, target)
                cot.append({"uid": row["uid"], "reasoning": text})
                if rng.random() < 0.5:
                    # A Stage-1 mistake: the same reasoning, landing on the next object (on an object for a null row).
                    wrong = int(rng.integers(len(objects))) if target is None else (target + 1) % len(objects)
                    stage1_outputs[row["uid"]] = scene_cot(objects, cue, wrong)
                    corrected[row["uid"]] = text
        scenes.append({"vid": vid, "split": split, "media": media_name, "objects": [asdict(o) for o in objects]})

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["vid", "uid", "split", "fid", "exp"])
        writer.writeheader()
        writer.writerows(metadata)
    order = rng.permutation(len(cot))  # dumps are joined by uid, never by position
    (out / "stage1_cot.json").write_text(json.dumps([cot[i] for i in order], indent=0), encoding="utf-8")
    reflective, _ = build_reflective(stage1_outputs, corrected)
    with open(out / "stage2_reflective.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in reflective)
    with open(out / "scenes.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(s) + "\n" for s in scenes)
    return {name: sum(r["split"] == name for r in metadata) for name, _ in SPLIT_SHARES}


def _clip_rows(objects, split, vid, rng) -> list[dict]:
    """The metadata rows of one clip: 3 referring rows (or 2-3 null rows for test_n), maybe one null row."""
    rows = []
    if split != "test_n":
        candidates = candidate_expressions(objects)
        if split == "test_u":  # only targets of unseen classes
            candidates = [c for c in candidates if objects[c["target"]].class_name in UNSEEN_CLASSES]
        # One row per modality where possible, so every clip mixes vision, audio and time references.
        for modality in ("time", "audio", "vision"):
            pool = [c for c in candidates if c["modality"] == modality] or candidates
            if pool:
                pick = pool[int(rng.integers(len(pool)))]
                rows.append(pick)
                candidates = [c for c in candidates if c is not pick]
    n_null = int(rng.integers(2, 4)) if split == "test_n" else int(split in ("train", "val") and rng.random() < 0.25)
    prefix = "null_c" if rng.random() < 0.5 else "null_m"
    nulls = null_expressions(objects, rng)
    for k in rng.permutation(len(nulls))[:n_null]:
        rows.append({"template": "null", "text": nulls[k][0], "cue": nulls[k][1], "target": None})

    per_class, out = {}, []
    for row in rows:
        target = row["target"]
        class_name = NULL_CLASS if target is None else objects[target].class_name
        per_class[class_name] = per_class.get(class_name, 0) + 1
        uid_vid = vid if target is not None else f"{prefix}-{vid}"
        out.append(
            {
                "vid": vid,
                "uid": f"{uid_vid}_{class_name}_{per_class[class_name]}",
                "split": split,
                "fid": 0 if target is None else target,
                "exp": row["text"],
                "target": target,
                "cue": row["cue"],
                "template": row["template"],
            }
        )
    return out


def _write_clip(out: Path, media_name: str, vid: str, frames, masks, audio) -> None:
    frame_dir = out / "media" / media_name / "frames"
    frame_dir.mkdir(parents=True, exist_ok=True)
    for t, data in enumerate(frames):
        (frame_dir / f"{t}.jpg").write_bytes(data)
    (out / "media" / media_name / "audio.wav").write_bytes(audio)
    for fid, object_masks in enumerate(masks):
        mask_dir = out / "gt_mask" / vid / f"fid_{fid}"
        mask_dir.mkdir(parents=True, exist_ok=True)
        for t, data in enumerate(object_masks):
            (mask_dir / f"{t:05d}.png").write_bytes(data)


# ---------------------------------------------------------------------------------------------- CLI
LAYOUTS = ("refavs", "avsbench-s4", "avsbench-ms3")


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--layout", choices=LAYOUTS, default="refavs", help="Ref-AVS, or an AVSBench subset")
    parser.add_argument("--clips", type=int, default=100, help="number of clips (videos)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same bytes")
    parser.add_argument("--size", type=int, default=64, help="frame width and height in pixels")


def run(args) -> int:
    if args.layout != "refavs":  # data_prep/synth_avsbench.py
        from data_prep.synth_avsbench import run as run_avsbench

        return run_avsbench(args)
    counts = write_synthetic_refavs(args.out, clips=args.clips, seed=args.seed, size=args.size, show_progress=True)
    print(
        f"wrote {sum(counts.values())} rows from {args.clips} clips to {args.out}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    return 0
