"""Tiny random models, processors and tokenizers built with no network: for tests, tiny recipes and the quickstart.

    aurora-trl tiny --out DIR [--sam-size PX] [--seed S] [--base-only]

writes a tiny random [`AuroraForSegmentation`] with its processor (`--base-only`: a plain Qwen2.5-Omni thinker,
the "base checkpoint" the model is built from). Sizes follow the verified recipe of the reference notes: text
hidden 64 with 2 layers, a 2-block vision tower, a 2-layer audio encoder with 128 mel bins, a byte-level BPE
tokenizer of a few hundred tokens ([`aurora_trl.tiny_processor`]), and SAM with a 32-wide, 1-block ViT.
"""

import argparse
import json
from pathlib import Path

import torch
from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

from aurora_trl.modeling.lm_pretrain import LM_PRETRAINING_STEPS, pretrain_language_model
from aurora_trl.modeling.perception_pretrain import PERCEPTION_STEPS, pretrain_perception
from aurora_trl.modeling.sam_pretrain import PRETRAINING_STEPS, pretrain_mask_decoder
from aurora_trl.modeling.seg_grounding import GROUNDING_STEPS, pretrain_seg_grounding
from aurora_trl.tiny_processor import OMNI_TOKENS, build_tiny_processor, corpus_from_dataset


def tiny_thinker_config(
    tokenizer,
    hidden_size: int = 64,
    config_class=Qwen2_5OmniThinkerConfig,
    vocab_size: int | None = None,
    local_window: int | None = None,
    **extra,
):
    """A tiny [`~transformers.Qwen2_5OmniThinkerConfig`] (or `config_class`) whose token ids match `tokenizer`.

    The vocabulary (`vocab_size` rows, by default the tokenizer length rounded up to a multiple of 64 with at least
    one spare row) leaves room for `[SEG]` without a resize, as a base checkpoint's spare rows do. With
    `local_window`, the top layer attends only to the last `local_window` tokens (Qwen2's sliding window; the
    first layer keeps full attention). `extra` are further config fields.
    """
    ids = tokenizer.convert_tokens_to_ids
    vocab_size = vocab_size or (len(tokenizer) // 64 + 1) * 64
    text_config = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        # mrope_section must sum to head_dim / 2 = hidden / 4 / 2.
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": _mrope_section(hidden_size)},
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    if local_window:
        top = text_config["num_hidden_layers"] - 1  # layers from `max_window_layers` on slide
        text_config.update(use_sliding_window=True, sliding_window=local_window, max_window_layers=top)
    vision_config = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=hidden_size,
        window_size=56,
        fullatt_block_indexes=[1],
    )
    audio_config = dict(
        num_mel_bins=128,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        d_model=32,
        output_dim=hidden_size,
    )
    return config_class(
        text_config=text_config,
        vision_config=vision_config,
        audio_config=audio_config,
        audio_token_index=ids(OMNI_TOKENS["audio_token"]),
        image_token_index=ids(OMNI_TOKENS["image_token"]),
        video_token_index=ids(OMNI_TOKENS["video_token"]),
        audio_start_token_id=ids(OMNI_TOKENS["audio_bos_token"]),
        audio_end_token_id=ids(OMNI_TOKENS["audio_eos_token"]),
        # Not a declared field, but the image forward reads it (real checkpoints carry it).
        vision_start_token_id=ids(OMNI_TOKENS["vision_bos_token"]),
        vision_end_token_id=ids(OMNI_TOKENS["vision_eos_token"]),
        user_token_id=ids("<|im_start|>"),
        tie_word_embeddings=False,
        **extra,
    )


def _mrope_section(hidden_size: int) -> list[int]:
    half = hidden_size // 4 // 2  # 4 attention heads
    temporal = half // 4
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


def _set_generation_ids(model, tokenizer) -> None:
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None


def build_tiny_thinker(seed: int = 0):
    """A tiny random Qwen2.5-Omni thinker and its processor (no `[SEG]`): `(model, processor)`."""
    processor = build_tiny_processor(with_seg=False)
    torch.manual_seed(seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(tiny_thinker_config(processor.tokenizer))
    _set_generation_ids(model, processor.tokenizer)
    return model.eval(), processor


def save_tiny_thinker(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random plain Qwen2.5-Omni thinker and its processor to `out_dir` (the "base checkpoint").

    The folder loads with `Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(out_dir)` and
    [`load_processor`]`(out_dir)`.

    Args:
        out_dir (`str` or `Path`):
            Target folder (created).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the random weights.

    Returns:
        `Path`: `out_dir`.
    """
    out_dir = Path(out_dir)
    model, processor = build_tiny_thinker(seed=seed)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


# SAM at test size: a 32-wide, 1-block ViT (global attention) and a 1-block mask decoder; prompt width stays 256.
TINY_SAM = dict(
    sam_embed_dim=32,
    sam_depth=1,
    sam_num_heads=2,
    sam_global_attn_indexes=[0],
    sam_window_size=0,
    sam_decoder_depth=1,
    sam_decoder_heads=2,
    sam_decoder_mlp_dim=64,
)


def build_tiny_model(
    seed: int = 0,
    sam_image_size: int = 64,
    processor=None,
    corpus: list[str] | None = None,
    local_window: int | None = None,
    image_tokens: int = 4,
):
    """A tiny random [`AuroraForSegmentation`] and its processor (with `[SEG]`): `(model, processor)`.

    Args:
        seed (`int`, *optional*, defaults to `0`):
            Seed of the random weights.
        sam_image_size (`int`, *optional*, defaults to `64`):
            SAM input size (a multiple of 16); 64-256 keeps tests fast.
        processor (*optional*):
            A processor from [`build_tiny_processor`]`(with_seg=True)` to reuse.
        corpus (`list[str]`, *optional*):
            Domain texts for a new processor's tokenizer ([`build_tiny_tokenizer`]).
        local_window (`int`, *optional*):
            A sliding window for the top layer ([`tiny_thinker_config`]).
        image_tokens (`int`, *optional*, defaults to `4`):
            LLM tokens per frame of a new processor ([`build_tiny_processor`]).
    """
    from aurora_trl.modeling.configuration_aurora import AuroraConfig
    from aurora_trl.modeling.modeling_aurora import AuroraForSegmentation
    from aurora_trl.modeling.tokens import add_seg_token

    processor = (
        processor
        if processor is not None
        else build_tiny_processor(with_seg=True, image_tokens=image_tokens, corpus=corpus)
    )
    seg_token_id = add_seg_token(processor.tokenizer)
    config = tiny_thinker_config(
        processor.tokenizer,
        config_class=AuroraConfig,
        seg_token_id=seg_token_id,
        sam_image_size=sam_image_size,
        local_window=local_window,
        **TINY_SAM,
    )
    torch.manual_seed(seed)
    model = AuroraForSegmentation(config)
    _set_generation_ids(model, processor.tokenizer)
    return model.eval(), processor


SAM_PRETRAINING_REPORT = "sam_pretraining.json"
LM_PRETRAINING_REPORT = "lm_pretraining.json"
PERCEPTION_REPORT = "perception_pretraining.json"
GROUNDING_REPORT = "seg_grounding.json"


def load_dataset_folder(path: str | Path):
    """A data set saved by `aurora-trl data build` (imported here: `datasets` is only needed to pretrain)."""
    from datasets import load_from_disk

    return load_from_disk(str(path))


def save_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    sam_image_size: int = 64,
    corpus: list[str] | None = None,
    local_window: int | None = None,
    image_tokens: int = 4,
    sam_pretraining_data: str | Path | None = None,
    sam_pretraining_steps: int = PRETRAINING_STEPS,
    lm_pretraining_data: str | Path | None = None,
    lm_pretraining_steps: int = LM_PRETRAINING_STEPS,
    perception_data: str | Path | None = None,
    perception_steps: int = PERCEPTION_STEPS,
    grounding_data: str | Path | None = None,
    grounding_steps: int = GROUNDING_STEPS,
) -> Path:
    """Write a tiny random [`AuroraForSegmentation`] and its processor to `out_dir` (what `aurora-trl tiny` does).

    The folder loads with `AuroraForSegmentation.from_pretrained(out_dir)` and [`load_processor`]`(out_dir)`; its
    processor gives each frame `image_tokens` LLM tokens. With `sam_pretraining_data` (a data set built by `aurora-trl data build`), SAM's mask decoder is first taught to
    segment the object under a point prompt (`sam_pretraining_steps` steps of
    [`~aurora_trl.modeling.sam_pretrain.pretrain_mask_decoder`]), as a real model's SAM comes pretrained; how well
    it then follows its prompt is written to `sam_pretraining.json`. With `lm_pretraining_data`, the language model
    first learns the data set's answers from their text alone (`lm_pretraining_steps` steps of
    [`~aurora_trl.modeling.lm_pretrain.pretrain_language_model`]), as a real model's LLM comes pretrained; its
    held-out accuracy is written to `lm_pretraining.json`. With `perception_data`, the towers and the language model
    then learn to write each answer from its clip's frames and audio (`perception_steps` steps of
    [`~aurora_trl.modeling.perception_pretrain.pretrain_perception`]), as a real model's towers come able to
    describe a clip; its held-out accuracy with the own clip and with another is written to
    `perception_pretraining.json`. With `grounding_data`, last, the language model and the
    `[SEG]` projector learn to point SAM at the object each answer names (`grounding_steps` steps of
    [`~aurora_trl.modeling.seg_grounding.pretrain_seg_grounding`]; it needs SAM pretrained); how far the masks then
    follow the answer is written to `seg_grounding.json`.
    """
    out_dir = Path(out_dir)
    model, processor = build_tiny_model(
        seed=seed, sam_image_size=sam_image_size, corpus=corpus, local_window=local_window, image_tokens=image_tokens
    )
    reports = {}
    if sam_pretraining_data is not None:
        data = load_dataset_folder(sam_pretraining_data)
        reports[SAM_PRETRAINING_REPORT] = pretrain_mask_decoder(model, data, sam_pretraining_steps, seed=seed)
    if lm_pretraining_data is not None:
        data = load_dataset_folder(lm_pretraining_data)
        reports[LM_PRETRAINING_REPORT] = pretrain_language_model(
            model, processor, data, lm_pretraining_steps, seed=seed
        )
    if perception_data is not None:
        data = load_dataset_folder(perception_data)
        reports[PERCEPTION_REPORT] = pretrain_perception(model, processor, data, perception_steps, seed=seed)
    if grounding_data is not None:
        data = load_dataset_folder(grounding_data)
        reports[GROUNDING_REPORT] = pretrain_seg_grounding(model, processor, data, grounding_steps, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, report in reports.items():
        (out_dir / name).write_text(json.dumps(report, indent=2), encoding="utf-8")
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--sam-size", type=int, default=64, help="SAM input size in pixels (multiple of 16)")
    parser.add_argument(
        "--tokenizer-corpus",
        help="a data set folder (aurora-trl data build) whose train texts the tokenizer learns, a token per word",
    )
    parser.add_argument(
        "--local-window",
        type=int,
        help="the top layer attends only to this many last tokens (a sliding window): its [SEG] state then follows "
        "the answer's last words",
    )
    parser.add_argument(
        "--image-tokens",
        type=int,
        default=4,
        help="LLM tokens per frame (4: a 2x2 grid of 56-px frames; 9: a 3x3 grid of 84-px frames, which the perception "
        "pretraining needs to tell the synthetic clips' three slots apart; recipes then need --max_pixels 7056)",
    )
    # Each pretraining: its flag prefix, default steps, rows per step, and what it teaches on the data set's rows.
    sam = "SAM's mask decoder first learns to segment the object under a point prompt, as a real SAM comes pretrained"
    lm = (
        "the language model first learns the answers from their text alone (no frames or audio), as a real LLM comes "
        "pretrained"
    )
    perception = (
        "the towers and the language model then learn to write the answers from each clip's frames and audio, as a "
        "real model's towers come able to describe a clip"
    )
    grounding = (
        "the [SEG] token then learns to point SAM at the object each answer names (after --sam-pretraining-data), "
        "as a real model's [SEG] comes grounded"
    )
    pretrainings = [
        ("--sam-pretraining", PRETRAINING_STEPS, 4, sam),
        ("--lm-pretraining", LM_PRETRAINING_STEPS, 32, lm),
        ("--perception", PERCEPTION_STEPS, 8, perception),
        ("--grounding", GROUNDING_STEPS, 8, grounding),
    ]
    for flag, steps, rows, teaches in pretrainings:
        parser.add_argument(
            f"{flag}-data", help=f"a data set folder (aurora-trl data build) on whose training rows {teaches}"
        )
        parser.add_argument(f"{flag}-steps", type=int, default=steps, help=f"steps of {rows} rows for {flag}-data")
    parser.add_argument(
        "--base-only", action="store_true", help="write only a plain Qwen2.5-Omni thinker (a base checkpoint)"
    )


def run(args: argparse.Namespace) -> int:
    if args.base_only:
        out = save_tiny_thinker(args.out, seed=args.seed)
    else:
        corpus = corpus_from_dataset(args.tokenizer_corpus) if args.tokenizer_corpus else None
        out = save_tiny_model(
            args.out,
            seed=args.seed,
            sam_image_size=args.sam_size,
            corpus=corpus,
            local_window=args.local_window,
            image_tokens=args.image_tokens,
            sam_pretraining_data=args.sam_pretraining_data,
            sam_pretraining_steps=args.sam_pretraining_steps,
            lm_pretraining_data=args.lm_pretraining_data,
            lm_pretraining_steps=args.lm_pretraining_steps,
            perception_data=args.perception_data,
            perception_steps=args.perception_steps,
            grounding_data=args.grounding_data,
            grounding_steps=args.grounding_steps,
        )
    print(json.dumps({"out": str(out), "files": sorted(p.name for p in Path(out).iterdir())}))
    return 0
