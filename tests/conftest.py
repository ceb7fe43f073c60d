"""Shared test set-up: offline, CPU, quiet; tiny data and models are built here once per session."""

import logging
import os


# Set before anything imports huggingface_hub: with these, an accidental Hub call fails in seconds.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small synthetic Ref-AVS folder (metadata, media, masks, dumps), written once per test session."""
    from data_prep.synth import write_synthetic_refavs

    root = tmp_path_factory.mktemp("synth") / "refavs"
    write_synthetic_refavs(root, clips=20, seed=0, size=48)
    return root


@pytest.fixture(scope="session")
def synth_dataset(synth_root, tmp_path_factory):
    """`synth_root` built into a data set with both dumps (read it with `load_from_disk`; do not modify it)."""
    from data_prep.build import build_dataset

    out = tmp_path_factory.mktemp("synth_ds") / "ds"
    build_dataset(
        synth_root, out, stage1=synth_root / "stage1_cot.json", stage2=synth_root / "stage2_reflective.jsonl"
    )
    return out


@pytest.fixture(scope="session")
def sixty_clips_dataset(tmp_path_factory):
    """60 synthetic clips at 64 px, built with both dumps: enough rows for the tiny model's pretrainings to learn
    from (read it with `load_from_disk`; do not modify it)."""
    from tests.helpers import built_synthetic_dataset

    return built_synthetic_dataset(tmp_path_factory.mktemp("sixty_clips"), clips=60, seed=3, size=64)


# ---- model fixtures (aurora_trl.modeling) below this line ----


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    """A tiny random plain Qwen2.5-Omni thinker + processor folder (the "base checkpoint"), written once."""
    from aurora_trl.tiny import save_tiny_thinker

    return save_tiny_thinker(tmp_path_factory.mktemp("tiny_base") / "thinker", seed=0)


@pytest.fixture(scope="session")
def tiny_aurora_dir(tmp_path_factory):
    """A tiny random AuroraForSegmentation + processor folder (SAM at 64 px), written once."""
    from aurora_trl.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny_aurora") / "model", seed=0, sam_image_size=64)


@pytest.fixture(scope="session")
def tiny_local_aurora_dir(tmp_path_factory):
    """`tiny_aurora_dir` with a sliding window of 6 tokens in its top layer (the quickstart's tiny model)."""
    from aurora_trl.tiny import save_tiny_model

    out = tmp_path_factory.mktemp("tiny_local_aurora") / "model"
    return save_tiny_model(out, seed=0, sam_image_size=64, local_window=6)


@pytest.fixture
def tiny_aurora(tiny_aurora_dir):
    """A fresh `(model, processor)` loaded from `tiny_aurora_dir` (tests may modify it)."""
    from aurora_trl.modeling import AuroraForSegmentation, load_processor

    return AuroraForSegmentation.from_pretrained(tiny_aurora_dir).eval(), load_processor(tiny_aurora_dir)


@pytest.fixture(scope="session")
def tiny_clip():
    """Ten 48×64 frames and one second of 16 kHz audio."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in range(10)]
    audio = (0.1 * np.sin(np.linspace(0, 3000, 16000))).astype("float32")
    return frames, audio


# ---- Qwen2.5-Omni's real tokenizer and stock processor (tests/qwen_real.py) ----


@pytest.fixture(scope="session")
def real_base_dir(tmp_path_factory):
    """A small Qwen2.5-Omni thinker with the real tokenizer, the stock processor and the full vocabulary, in the
    Hub's layout, with no end-of-turn token in its generation config."""
    from tests.qwen_real import write_real_base

    return write_real_base(tmp_path_factory.mktemp("real_base") / "thinker")


@pytest.fixture(scope="session")
def real_aurora_dir(real_base_dir, tmp_path_factory):
    """`real_base_dir` built into an AURORA model (small SAM at 64 px) as a training run builds it: `[SEG]` added, the
    recipes' frame and audio caps on the processor; saved once."""
    from aurora_trl.modeling import AuroraForSegmentation, load_processor
    from aurora_trl.modeling.processing import bound_processor
    from aurora_trl.tiny import TINY_SAM

    processor = bound_processor(load_processor(real_base_dir))  # as `load_model` does, with the recipes' defaults
    overrides = {**TINY_SAM, "sam_image_size": 64}
    model, processor = AuroraForSegmentation.from_base(real_base_dir, processor, config_overrides=overrides)
    out = tmp_path_factory.mktemp("real_aurora") / "model"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
