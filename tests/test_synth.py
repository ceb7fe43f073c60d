"""The synthetic Ref-AVS generator: layout, determinism, splits, and that audio rows need the audio."""

import copy
import csv
import hashlib
import json

import numpy as np
import soundfile as sf
from PIL import Image

from aurora_trl.text import class_from_uid, has_canonical_steps, parse_answer_class
from data_prep.synth import (
    SEEN_CLASSES,
    UNSEEN_CLASSES,
    SceneObject,
    candidate_expressions,
    make_scene,
    write_synthetic_refavs,
)


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def metadata(root):
    with open(root / "metadata.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    write_synthetic_refavs(tmp_path / "a", clips=6, seed=3, size=32)
    write_synthetic_refavs(tmp_path / "b", clips=6, seed=3, size=32)
    write_synthetic_refavs(tmp_path / "c", clips=6, seed=4, size=32)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "c")


def test_layout_matches_refavs(synth_root):
    rows = metadata(synth_root)
    assert list(rows[0]) == ["vid", "uid", "split", "fid", "exp"]
    scenes = {s["vid"]: s for s in map(json.loads, (synth_root / "scenes.jsonl").read_text().splitlines())}
    for row in rows:
        media = synth_root / "media" / scenes[row["vid"]]["media"]
        frames = sorted((media / "frames").glob("*.jpg"))
        assert [f.name for f in sorted(frames, key=lambda p: int(p.stem))] == [f"{t}.jpg" for t in range(10)]
        wave, rate = sf.read(media / "audio.wav")
        assert rate == 16000 and wave.ndim == 1 and len(wave) == 160000
        if class_from_uid(row["uid"]) != "null":
            masks = sorted((synth_root / "gt_mask" / row["vid"] / f"fid_{row['fid']}").glob("*.png"))
            assert [m.name for m in masks] == [f"{t:05d}.png" for t in range(10)]
            values = np.unique(np.asarray(Image.open(masks[0])))
            assert set(values) <= {0, 255} and 255 in values
    # both folder-naming conventions of null clips occur
    media_names = {s["media"] for s in scenes.values()}
    assert any(m.startswith(("null_c-", "null_m-")) for m in media_names)


def test_splits_follow_refavs(synth_root):
    rows = metadata(synth_root)
    by_split = {}
    for row in rows:
        by_split.setdefault(row["split"], []).append(class_from_uid(row["uid"]))
    assert set(by_split) == {"train", "val", "test_s", "test_u", "test_n"}
    assert set(by_split["test_n"]) == {"null"}
    assert set(by_split["test_u"]) <= set(UNSEEN_CLASSES)
    assert not set(by_split["train"]) & set(UNSEEN_CLASSES)
    assert set(by_split["train"]) - {"null"} <= set(SEEN_CLASSES)
    assert all(r["uid"].startswith(("null_c-", "null_m-")) for r in rows if class_from_uid(r["uid"]) == "null")


def test_dumps_are_canonical_and_name_the_right_class(synth_root):
    cot = json.loads((synth_root / "stage1_cot.json").read_text())
    uids = [r["uid"] for r in cot]
    assert uids != sorted(uids, key=[r["uid"] for r in metadata(synth_root)].index)  # shuffled
    for record in cot:
        assert has_canonical_steps(record["reasoning"])
        assert parse_answer_class(record["reasoning"]) == class_from_uid(record["uid"])
    for line in (synth_root / "stage2_reflective.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert " Wait, let me reconsider. " in record["reflective"]
        assert parse_answer_class(record["y_wrong"]) != class_from_uid(record["uid"])
        assert parse_answer_class(record["reflective"]) == class_from_uid(record["uid"])


def test_audio_rows_need_the_audio_and_vision_rows_do_not():
    """Swapping the sounds of two objects (same frames) must move every audio/time referent and no vision one."""
    rng = np.random.default_rng(0)
    moved = {"audio": 0, "time": 0, "vision": 0}
    for _ in range(200):
        objects = make_scene(rng, "train")
        swapped = copy.deepcopy(objects)
        i, j = 0, 1
        for field in ("pitch", "f0", "onset", "offset"):
            a, b = getattr(swapped[i], field), getattr(swapped[j], field)
            setattr(swapped[i], field, b)
            setattr(swapped[j], field, a)
        before = {c["template"]: c for c in candidate_expressions(objects)}
        after = {c["template"]: c for c in candidate_expressions(swapped)}
        for template, cand in before.items():
            if template in after and cand["modality"] != "vision" and cand["target"] in (i, j):
                assert after[template]["target"] != cand["target"], template
                moved[cand["modality"]] += 1
        for cand in candidate_expressions(objects):
            if cand["modality"] == "vision":
                assert cand in candidate_expressions(swapped)
    assert moved["audio"] > 50 and moved["time"] > 50


def test_candidates_pick_exactly_one_object():
    objects = [
        SceneObject("guitar", "red", "left", "low", 120.0, 0, 4),
        SceneObject("piano", "blue", "right", "high", 700.0, 3, 8),
        SceneObject("dog", "green", "center", "middle", 300.0, None, None),
    ]
    found = {c["template"]: c["target"] for c in candidate_expressions(objects)}
    assert found["first_sound"] == 0 and found["last_sound"] == 1
    assert found["lowest_sound"] == 0 and found["highest_sound"] == 1 and found["silent"] == 2


def test_null_rows_name_only_seen_classes(synth_root):
    """A null row about tuba or lion (the unseen classes test_u asks about) would teach them as "nothing"."""
    import csv

    from data_prep.synth import UNSEEN_CLASSES

    with open(synth_root / "metadata.csv", newline="") as f:
        nulls = [row["exp"] for row in csv.DictReader(f) if "_null_" in row["uid"]]
    assert nulls and not [e for e in nulls if any(name in e for name in UNSEEN_CLASSES)]


def test_short_cot_fits_a_word_level_tokenizer(synth_dataset):
    """The tiny tokenizer learns the data set's texts a token per word: a whole answer is a few dozen tokens, short
    enough for GRPO's sampling budget (byte-level units made it 200 to 500)."""
    from aurora_trl.text import sft_target
    from aurora_trl.tiny_processor import build_tiny_tokenizer, corpus_from_dataset

    corpus = corpus_from_dataset(synth_dataset)
    assert len(corpus) > 20 and all(isinstance(text, str) and text for text in corpus)
    words = build_tiny_tokenizer(corpus=corpus)
    bytes_only = build_tiny_tokenizer()
    for text in corpus[:20]:
        target = sft_target(text)
        assert len(words.tokenize(target)) <= 3 * len(target.split())
        assert len(words.tokenize(target)) < len(bytes_only.tokenize(target))
    assert words.tokenize(" guitar") == ["Ġguitar"] and len(words) <= 1024 + 64
