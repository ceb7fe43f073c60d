"""Qwen2.5-Omni's real tokenizer and stock processor (built offline by tests/qwen_real.py) through every path: the
token ids and chat template, bounded prompts at real frame sizes, generation that stops at the end of turn,
collation, one step of each stage, `eval`, and the rewards on what the tokenizer decodes."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from datasets import load_from_disk
from PIL import Image
from transformers import Qwen2_5OmniThinkerConfig
from trl import ModelConfig

from aurora_trl.cli import main as cli_main
from aurora_trl.data_row import decode_audio
from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.rewards import REWARD_FUNCS
from aurora_trl.scripts.common import AuroraScriptArguments, load_model
from aurora_trl.text import ANSWER_SUFFIX, SEG_TOKEN, SYSTEM_PROMPT, build_prompt, format_cot, user_text
from aurora_trl.trainers.collator import AuroraCollator, sequence_length
from aurora_trl.trainers.grpo_trainer import AuroraGRPOTrainer
from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer
from tests.helpers import grpo_config, sft_config
from tests.qwen_real import SEG_ID, VOCAB_ROWS


@pytest.fixture(scope="module")
def processor(real_aurora_dir):
    """The saved processor, loaded once (the real tokenizer takes seconds to load); tests do not modify it."""
    return load_processor(real_aurora_dir)


def policy_model(folder):
    """The model as the real recipes train it: LoRA and only the `[SEG]` rows of the embeddings and the head."""
    return apply_training_policy(AuroraForSegmentation.from_pretrained(folder), TrainingPolicy(token_rows="seg"))


def trainable_snapshot(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def changed_groups(model, before) -> set[str]:
    """Which kinds of trainable parameters moved: LoRA, the `[SEG]` token rows, the mask decoder."""
    moved = [n for n, p in model.named_parameters() if n in before and not torch.equal(before[n], p)]
    kinds = {"lora_B": "lora", "trainable_tokens": "seg rows", "mask_decoder": "mask decoder"}
    return {kind for key, kind in kinds.items() if any(key in n for n in moved)}


def frames_of(height, width, count=10):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)) for _ in range(count)]


def test_tokens_and_chat_template_are_qwen25_omnis(real_aurora_dir, processor):
    tokenizer = processor.tokenizer
    defaults = Qwen2_5OmniThinkerConfig()  # transformers' Qwen2.5-Omni ids
    assert (processor.audio_token_id, processor.image_token_id, processor.video_token_id) == (
        defaults.audio_token_index,
        defaults.image_token_index,
        defaults.video_token_index,
    )
    markers = [processor.audio_bos_token, processor.audio_eos_token, processor.vision_bos_token]
    assert tokenizer.convert_tokens_to_ids(markers + [processor.vision_eos_token]) == [151647, 151648, 151652, 151653]
    assert tokenizer.convert_tokens_to_ids(processor.audio_bos_token) == defaults.audio_start_token_id
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (151645, 151643)
    config = AuroraForSegmentation.config_class.from_pretrained(real_aurora_dir)
    assert tokenizer.convert_tokens_to_ids(SEG_TOKEN) == config.seg_token_id == SEG_ID
    assert config.get_text_config().vocab_size == VOCAB_ROWS
    expected = (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>"
        + "<|vision_bos|><|IMAGE|><|vision_eos|>" * 2
        + f"{user_text('the dog')}<|im_end|>\n<|im_start|>assistant\n"
    )
    prompt = build_prompt("the dog", num_frames=2)
    assert processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False) == expected
    # a data-set row's prompt: Arrow gives every block the union of the keys (`text: None` on images and audio)
    stored = [{**m, "content": [{"text": None, **b} for b in m["content"]]} for m in prompt]
    assert processor.apply_chat_template(stored, add_generation_prompt=True, tokenize=False) == expected
    ids = tokenizer(ANSWER_SUFFIX, add_special_tokens=False)["input_ids"]
    assert ids.count(SEG_ID) == 1 and tokenizer.decode(ids, skip_special_tokens=True) == ANSWER_SUFFIX


def test_prompts_are_bounded_at_real_frame_sizes(real_aurora_dir):
    """The stock processor lets a 1080p frame become 2,691 tokens and pads 10 s of audio to 300 s; a run's processor
    (`load_model` with the recipes' defaults, saved with the model) caps both."""
    _, processor = load_model(
        AuroraScriptArguments(dataset_name="unused"), ModelConfig(model_name_or_path=str(real_aurora_dir))
    )
    frames, audio = frames_of(1080, 1920), np.zeros(10 * 16_000, dtype=np.float32)
    text = processor.apply_chat_template(build_prompt("the dog"), add_generation_prompt=True, tokenize=False)
    encoded = processor(text=[text], images=frames, audio=[audio], return_tensors="pt")
    assert encoded["input_ids"].shape[1] == 2208  # 10 frames x 180 tokens (504 x 280 px), 250 of audio, 158 of text
    assert tuple(encoded["input_features"].shape) == (1, 128, 1000)
    saved = load_processor(real_aurora_dir)  # what eval, predict and the demo load
    assert saved.image_processor.size["longest_edge"] == 384 * 384 and saved.feature_extractor.n_samples == 160_000


def test_collated_length_is_known_before_collation_and_holds_one_seg(processor, synth_dataset):
    row = {**load_from_disk(str(synth_dataset))["train"][0], "images": frames_of(360, 640)}
    batch = AuroraCollator(processor, 64, "reasoning")([row])
    samples = len(decode_audio(row["audio"]))
    expected = sequence_length(processor, row, "reasoning", [(360, 640)] * 10, samples)
    assert batch["input_ids"].shape[1] == expected
    labels = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert labels.count(SEG_ID) == 1 and labels[-1] == processor.tokenizer.eos_token_id


def test_rows_longer_than_max_length_are_left_out_and_named(
    real_aurora_dir, processor, synth_dataset, tmp_path, caplog
):
    rows = load_from_disk(str(synth_dataset))["train"].select(range(6))
    lengths = [
        sequence_length(processor, r, "reasoning", [i.size[::-1] for i in r["images"]], len(decode_audio(r["audio"])))
        for r in rows
    ]
    limit = sorted(lengths)[len(lengths) // 2]
    args = sft_config(tmp_path, max_length=limit, distill_loss_weight=0.0)
    with caplog.at_level("WARNING"):
        trainer = AuroraSFTTrainer(
            model=policy_model(real_aurora_dir), args=args, train_dataset=rows, processing_class=processor
        )
    too_long = [r["uid"] for r, n in zip(rows, lengths) if n > limit]
    assert too_long and len(trainer.train_dataset) == len(rows) - len(too_long)
    assert (
        f"{len(too_long)} of 6 rows are longer than max_length={limit}" in caplog.text and too_long[0] in caplog.text
    )
    with pytest.raises(ValueError, match="every row is longer than max_length"):
        AuroraSFTTrainer(
            model=policy_model(real_aurora_dir),
            args=sft_config(tmp_path, max_length=min(lengths) - 1, distill_loss_weight=0.0),
            train_dataset=rows,
            processing_class=processor,
        )


def test_generation_stops_at_the_end_of_turn(real_base_dir, real_aurora_dir, tmp_path, tiny_clip):
    """A checkpoint whose generation_config.json names no eos (as transformers 5 saves a full Omni checkpoint):
    generation must stop at `<|im_end|>`, so a `[SEG]` the model would write after its turn is never part of the
    answer."""
    folder = tmp_path / "model"
    shutil.copytree(real_aurora_dir, folder)
    generation = json.loads((folder / "generation_config.json").read_text())
    generation.pop("eos_token_id", None)
    (folder / "generation_config.json").write_text(json.dumps(generation))
    model, processor = AuroraForSegmentation.from_pretrained(folder).eval(), load_processor(folder)
    eos = processor.tokenizer.eos_token_id
    assert model.generation_config.eos_token_id == eos
    assert json.loads((real_aurora_dir / "generation_config.json").read_text())["eos_token_id"] == eos  # from_base
    frames, audio = tiny_clip
    # greedy decoding writes the end of turn first, then (if it went on) [SEG]
    bias = [[[eos], 50.0], [[eos, SEG_ID], 100.0]]
    out = model.segment(frames, audio, "the dog", processor=processor, max_new_tokens=4, sequence_bias=bias)
    assert not out.seg_emitted and out.text == ANSWER_SUFFIX
    from aurora_trl.apps.cot import load_thinker  # `aurora-trl data cot` loads transformers' own thinker

    thinker, _ = load_thinker(str(real_base_dir), "cpu")
    assert thinker.generation_config.eos_token_id == eos


@pytest.mark.parametrize("target", ["direct", "reasoning", "reflective"])
def test_one_step_of_each_supervised_stage(real_aurora_dir, processor, synth_dataset, tmp_path, target):
    model = policy_model(real_aurora_dir)
    before = trainable_snapshot(model)
    trainer = AuroraSFTTrainer(
        model=model,
        args=sft_config(
            tmp_path,
            sft_target=target,
            max_steps=1,
            per_device_train_batch_size=1,
            distill_loss_weight=float(target == "reasoning"),
        ),
        train_dataset=load_from_disk(str(synth_dataset))["train"].select(range(4)),
        processing_class=processor,
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert all(math.isfinite(logged[k]) for k in ("loss", "loss/ce", "loss/bce", "loss/dice", "seg/found"))
    assert logged["seg/found"] == 1.0  # every target's [SEG] is the real tokenizer's id 151665
    assert changed_groups(trainer.model, before) == {"lora", "seg rows", "mask decoder"}


def test_one_grpo_step(real_aurora_dir, processor, synth_dataset, tmp_path):
    model = policy_model(real_aurora_dir)
    before = trainable_snapshot(model)
    args = grpo_config(
        tmp_path,
        max_steps=1,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=6,
        loss_type="grpo",
        disable_dropout=True,
        # a random policy spreads over 151,936 tokens: [SEG] needs a large bias to be sampled at all
        generation_kwargs={"sequence_bias": [[[SEG_ID], 12.0]]},
    )
    trainer = AuroraGRPOTrainer(
        model=model,
        args=args,
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=processor,
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    for key in ("rewards/format_reward/mean", "rewards/class_reward/mean", "rewards/iou_reward/mean", "iou/mean"):
        assert math.isfinite(logged[key]), key
    assert logged["mask/seg_emitted"] > 0
    assert "mask decoder" in changed_groups(trainer.model, before)


def test_eval_on_a_few_clips(real_aurora_dir, synth_dataset, tmp_path):
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(real_aurora_dir), "--data", str(synth_dataset), "--out", str(out)]
    assert cli_main(argv + ["--max-new-tokens", "3", "--limit", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_s"]["J"] <= 1.0 and 0.0 <= metrics["test_n"]["S"] <= 1.0


def test_every_reward_reads_what_the_real_tokenizer_decodes(processor):
    tokenizer = processor.tokenizer
    answer = format_cot("A man plays a guitar.", "Strumming, then a bark.", "It plays first.", "guitar")
    ids = tokenizer(f"{answer} {ANSWER_SUFFIX}{tokenizer.eos_token}", add_special_tokens=False)["input_ids"]
    decoded = tokenizer.decode(ids, skip_special_tokens=True)  # as TRL decodes a completion
    completions = [[{"role": "assistant", "content": decoded}]]
    values = {name: f(completions, class_name=["guitar"], iou=[0.25]) for name, f in REWARD_FUNCS.items()}
    assert values == {"format": [1.0], "class": [2.0], "reasoning": [1.0], "iou": [0.25]}


def test_training_and_inference_show_a_clip_the_same_way(real_aurora_dir, processor, synth_dataset):
    """One way to show the frames: as 10 images, in the collator (and GRPO, which renders the same stored prompt) and
    in `segment()`; the inference-only video switch is gone."""
    assert "frames_as_video" not in AuroraForSegmentation.config_class().to_dict()
    row = load_from_disk(str(synth_dataset))["train"][0]
    trained = AuroraCollator(processor, 64, "direct")([row])
    model = AuroraForSegmentation.from_pretrained(real_aurora_dir)
    frames = [image.convert("RGB") for image in row["images"]]
    inferred = model.prepare_inputs(processor, frames, decode_audio(row["audio"]), row["expression"])
    length = inferred["input_ids"].shape[1]
    assert torch.equal(trained["input_ids"][0, :length], inferred["input_ids"][0])
    for key in ("pixel_values", "image_grid_thw", "input_features", "feature_attention_mask"):
        assert torch.equal(trained[key], inferred[key]), key
