"""AuroraForSegmentation: [SEG] convention, shapes, gradients and policy, save/load, base loading, segment()."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from transformers import Qwen2_5OmniThinkerForConditionalGeneration

from aurora_trl.modeling import (
    AuroraForSegmentation,
    load_processor,
    multimodal_token_ids,
    select_seg_hidden_states,
)
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy, lora_config, trainable
from aurora_trl.modeling.sam import SAM_PIXEL_MEAN, SAM_PIXEL_STD, preprocess_frames
from aurora_trl.text import ANSWER_SUFFIX, SEG_TOKEN
from aurora_trl.tiny import TINY_SAM


LLM_WEIGHT = "model.language_model.layers.0.self_attn.q_proj.weight"


def _all_finite(model):
    return {
        name: t
        for name, t in {**dict(model.named_parameters()), **dict(model.named_buffers())}.items()
        if not torch.isfinite(t).all()
    }


def _batch(model, processor, frames, audio, answer="The target is dog. It is [SEG]."):
    """Processor inputs of prompt + answer for one clip (a teacher-forced training row)."""
    inputs = model.prepare_inputs(processor, frames, audio, "the dog")
    answer_ids = processor.tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], answer_ids], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    return inputs


def _batch_with_answer_labels(model, processor, frames, audio):
    """[`_batch`] and labels on its last 5 tokens only."""
    inputs = _batch(model, processor, frames, audio)
    labels = inputs["input_ids"].clone()
    labels[:, :-5] = -100
    return inputs, labels


# ----- the [SEG] convention -----
def test_seg_hidden_state_is_last_seg_with_last_attended_fallback():
    seg = 7
    hidden = torch.arange(2 * 6 * 3, dtype=torch.float).view(2, 6, 3)
    input_ids = torch.tensor([[1, seg, 2, seg, 3, 0], [0, 0, 1, 2, 3, 4]])
    # row 0 right-padded (last position is padding), row 1 left-padded, no [SEG]
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]])
    states, found, positions = select_seg_hidden_states(hidden, input_ids, seg, attention_mask)
    assert found.tolist() == [True, False]
    assert positions.tolist() == [3, 5]  # the last [SEG]; the last attended token
    assert torch.equal(states, hidden[[0, 1], [3, 5]])
    # A padded [SEG] never counts, and a tuple of layers uses the last one.
    input_ids[1, 0] = seg
    states2, found2, positions2 = select_seg_hidden_states((hidden * 0, hidden), input_ids, seg, attention_mask)
    assert found2.tolist() == [True, False] and positions2.tolist() == [3, 5]
    assert torch.equal(states2, states)
    # Right padding without [SEG]: the last attended token, not the padding.
    _, _, positions3 = select_seg_hidden_states(
        hidden, torch.tensor([[1, 2, 0, 0]]), seg, torch.tensor([[1, 1, 0, 0]])
    )
    assert positions3.tolist() == [1]


def test_seg_token_is_a_normal_token_and_markers_are_known(tiny_aurora):
    model, processor = tiny_aurora
    tok = processor.tokenizer
    assert model.config.seg_token_id == tok.convert_tokens_to_ids(SEG_TOKEN)
    assert SEG_TOKEN not in tok.all_special_tokens
    ids = multimodal_token_ids(model.config)
    for token in (
        "<|IMAGE|>",
        "<|AUDIO|>",
        "<|VIDEO|>",
        "<|vision_bos|>",
        "<|vision_eos|>",
        "<|audio_bos|>",
        "<|audio_eos|>",
    ):
        assert tok.convert_tokens_to_ids(token) in ids
    assert model.config.seg_token_id not in ids


# ----- shapes -----
def test_shapes_of_seg_embeddings_and_masks(tiny_aurora, tiny_clip):
    model, processor = tiny_aurora
    frames, audio = tiny_clip
    inputs = _batch(model, processor, frames, audio)
    with torch.no_grad():
        hidden = model.get_backbone()(**inputs).last_hidden_state
        seg, found = model.seg_embeddings(hidden, inputs["input_ids"], inputs["attention_mask"])
        assert seg.shape == (1, 256) and found.tolist() == [True]
        sam = preprocess_frames(frames, model.config.sam_image_size)
        assert sam.pixel_values.shape == (10, 3, 64, 64) and sam.input_size == (48, 64)
        # Padding is zero after normalisation; content is normalised with SAM's statistics.
        assert torch.equal(sam.pixel_values[:, :, 48:], torch.zeros(10, 3, 16, 64))
        embeddings = model.encode_images(sam.pixel_values)
        assert embeddings.shape == (10, 256, 4, 4)
        group = seg.expand(3, -1)  # three completions of one clip
        low = model.predict_masks(group, image_embeddings=embeddings[None])
        assert low.shape == (3, 10, 16, 16)
        masks = model.predict_masks(
            group, image_embeddings=embeddings[None], input_sizes=sam.input_size, original_sizes=sam.original_size
        )
        assert len(masks) == 3 and all(m.shape == (10, 48, 64) for m in masks)
        # Two clips, embeddings mapped by clip_index; same result as the one-clip call for clip 0.
        two = model.predict_masks(
            seg.expand(2, -1),
            image_embeddings=torch.stack([embeddings, embeddings.flip(0)]),
            clip_index=torch.tensor([0, 1]),
        )
        assert torch.allclose(two[0], low[0], atol=1e-6)
        assert torch.allclose(two[1], low[0].flip(0), atol=1e-6)
        # pixel_values path = image_embeddings path
        via_pixels = model.predict_masks(seg, pixel_values=sam.pixel_values[None])
        torch.testing.assert_close(via_pixels, low[:1])


def test_forward_with_labels_is_the_language_model_loss(tiny_aurora, tiny_clip):
    # transformers picks the loss by class-name suffix; "ForSegmentation" must not select the DETR-style loss.
    model, processor = tiny_aurora
    frames, audio = tiny_clip
    inputs, labels = _batch_with_answer_labels(model, processor, frames, audio)
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits[0, :-1], labels[0, 1:], ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)


def test_trl_fused_lm_head_and_backbone_hook_give_the_seg_state(tiny_aurora, tiny_clip):
    """What the SFT/GRPO trainers rely on: TRL's fused head runs on this class, and a forward hook on the backbone
    yields the same final-layer states (hence the same [SEG] state) as `output_hidden_states`."""
    from trl.trainer.utils import add_fused_lm_head

    model, processor = tiny_aurora
    frames, audio = tiny_clip
    inputs, labels = _batch_with_answer_labels(model, processor, frames, audio)
    with torch.no_grad():
        full = model(**inputs, output_hidden_states=True)
    add_fused_lm_head(model)
    store = {}
    # A forward hook must return None: a returned value replaces the module output.
    hook = model.get_backbone().register_forward_hook(lambda m, a, o: store.update(h=o.last_hidden_state))
    try:
        with torch.no_grad():
            fused = model(**inputs, labels=labels, fused_lm_head=True)
    finally:
        hook.remove()
    log_probs = torch.log_softmax(full.logits[0, :-1], -1)[
        torch.arange(labels.shape[1] - 1), labels[0, 1:].clamp(min=0)
    ]
    mask = labels[0, 1:] != -100
    torch.testing.assert_close(fused.log_probs[0][mask], log_probs[mask], atol=1e-5, rtol=1e-5)
    ids, attn = inputs["input_ids"], inputs["attention_mask"]
    torch.testing.assert_close(
        select_seg_hidden_states(store["h"], ids, model.config.seg_token_id, attn)[0],
        select_seg_hidden_states(full.hidden_states, ids, model.config.seg_token_id, attn)[0],
    )


# ----- training policy and gradients -----
def test_lora_targets_only_llm_q_and_v(tiny_aurora):
    model, _ = tiny_aurora
    peft_model = apply_training_policy(model, TrainingPolicy())
    lora = sorted({n.split(".lora_")[0] for n, _ in peft_model.named_parameters() if ".lora_" in n})
    assert len(lora) == 4  # 2 layers × (q_proj, v_proj)
    assert all(".language_model.layers." in n and n.endswith(("self_attn.q_proj", "self_attn.v_proj")) for n in lora)
    config = lora_config(model)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.05)
    assert set(config.modules_to_save) == {"seg_projector", "mask_decoder"}
    seg = model.config.seg_token_id
    assert config.trainable_token_indices == {"embed_tokens": [seg], "lm_head": [seg]}


def test_mask_loss_reaches_projector_decoder_lora_and_never_frozen_parts(tiny_aurora, tiny_clip):
    model, processor = tiny_aurora
    frames, audio = tiny_clip
    model.train()
    peft_model = apply_training_policy(model, TrainingPolicy())
    inputs = _batch(model, processor, frames, audio)
    hidden = model.get_backbone()(**inputs).last_hidden_state
    seg, _ = model.seg_embeddings(hidden, inputs["input_ids"], inputs["attention_mask"])
    sam = preprocess_frames(frames, model.config.sam_image_size)
    masks = model.predict_masks(
        seg, pixel_values=sam.pixel_values[None], input_sizes=sam.input_size, original_sizes=sam.original_size
    )[0]
    target = torch.zeros_like(masks)
    target[:, 10:30, 20:40] = 1
    torch.nn.functional.binary_cross_entropy_with_logits(masks, target).backward()

    grads = {n: p.grad for n, p in peft_model.named_parameters()}
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}

    def has_grad(fragment):
        hits = [n for n in grads if fragment in n and grads[n] is not None and grads[n].abs().sum() > 0]
        return bool(hits)

    assert has_grad("seg_projector.modules_to_save.default.0.weight")
    assert has_grad("mask_decoder.modules_to_save.default.transformer")
    assert has_grad("language_model.layers.0.self_attn.q_proj.lora_B")
    assert has_grad("language_model.layers.1.self_attn.v_proj.lora_B")
    for name, grad in grads.items():
        frozen = (
            ".audio_tower." in name
            or ".visual." in name
            or ".sam.image_encoder." in name
            or ".sam.prompt_encoder." in name
            or ".original_module." in name
            or ("language_model.layers" in name and ".lora_" not in name)
        )
        if frozen:
            assert name not in trainable and grad is None, name
    # The [SEG] rows of the LM head and the embeddings are trainable (the CE loss trains them; the mask loss need not
    # reach them), not the whole matrices.
    rows = {n: p.shape for n, p in peft_model.named_parameters() if p.requires_grad and "trainable_tokens_delta" in n}
    assert sorted(n.split(".token_adapter")[0].rsplit(".", 1)[-1] for n in rows) == ["embed_tokens", "lm_head"]
    assert all(shape == (1, model.config.get_text_config().hidden_size) for shape in rows.values())
    assert not any(".embed_tokens." in n and "trainable_tokens_delta" not in n for n in trainable)
    # Parameters that no forward uses are frozen (DDP would fail on them).
    assert not any("iou_prediction_head" in n or "point_embeddings" in n for n in trainable)

    # With the LM loss added, every trainable parameter gets a gradient (what DDP without unused-parameter
    # search requires).
    peft_model.zero_grad(set_to_none=True)
    labels = inputs["input_ids"].clone()
    labels[:, :-8] = -100
    out = peft_model(**inputs, labels=labels, output_hidden_states=True)
    seg, _ = model.seg_embeddings(out.hidden_states, inputs["input_ids"], inputs["attention_mask"])
    masks = model.predict_masks(seg, pixel_values=sam.pixel_values[None])
    (out.loss + masks.sigmoid().mean()).backward()
    missing = [n for n, p in peft_model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing


def test_policy_without_lora_sets_requires_grad():
    from aurora_trl.tiny import build_tiny_model

    model, _ = build_tiny_model(sam_image_size=64)
    apply_training_policy(model, TrainingPolicy(use_lora=False, train_llm=False, train_lm_head=False))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("seg_projector.") for n in trained)
    assert any(n.startswith("sam.mask_decoder.transformer.") for n in trained)
    assert "model.language_model.embed_tokens.weight" in trained
    assert "lm_head.weight" not in trained
    assert not any(
        n.startswith(("model.audio_tower.", "model.visual.", "sam.image_encoder.", "model.language_model.layers."))
        for n in trained
    )


def test_trainable_gives_each_parameter_its_own_trainability_back_even_after_an_error():
    frozen, open_ = torch.nn.Parameter(torch.zeros(2), requires_grad=False), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(RuntimeError, match="stop"):
        with trainable([frozen, open_]):
            assert frozen.requires_grad and open_.requires_grad
            raise RuntimeError("stop")
    assert not frozen.requires_grad and open_.requires_grad


# ----- save / load / base checkpoint / initialisation -----
def test_save_load_round_trip_is_identical(tiny_aurora, tiny_clip, tmp_path):
    model, processor = tiny_aurora
    frames, audio = tiny_clip
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    reloaded = AuroraForSegmentation.from_pretrained(tmp_path).eval()
    reference = model.state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    assert not _all_finite(reloaded)
    inputs = _batch(model, processor, frames, audio)
    sam = preprocess_frames(frames, 64).pixel_values[None]
    with torch.no_grad():
        outs = []
        for m in (model, reloaded):
            out = m(**inputs, output_hidden_states=True)
            seg, _ = m.seg_embeddings(out.hidden_states, inputs["input_ids"], inputs["attention_mask"])
            outs.append((out.logits, m.predict_masks(seg, pixel_values=sam)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_saved_checkpoint_uses_hub_layout_and_loads_as_plain_thinker(tiny_aurora_dir):
    with safe_open(str(tiny_aurora_dir / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.self_attn.q_proj.weight" in keys  # Hub layout, not model.language_model.*
    assert any(k.startswith("sam.image_encoder.") for k in keys) and any(k.startswith("seg_projector.") for k in keys)
    assert not any("pixel_mean" in k for k in keys)  # non-persistent: restored by _init_weights
    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny_aurora_dir)
    aurora = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    assert torch.equal(thinker.state_dict()[LLM_WEIGHT], aurora.state_dict()[LLM_WEIGHT])


def test_from_base_really_loads_llm_weights_and_initialises_sam(tiny_base_dir):
    base = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny_base_dir)
    model, processor = AuroraForSegmentation.from_base(
        str(tiny_base_dir), config_overrides={**TINY_SAM, "sam_image_size": 64}
    )
    seg_id = processor.tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    assert model.config.seg_token_id == seg_id and seg_id < model.get_input_embeddings().num_embeddings
    for name in (
        LLM_WEIGHT,
        "model.language_model.embed_tokens.weight",
        "lm_head.weight",
        "model.audio_tower.layers.0.self_attn.q_proj.weight",
        "model.visual.blocks.0.attn.q.weight",
    ):
        assert torch.equal(base.state_dict()[name], model.state_dict()[name]), name
    # Every SAM tensor initialised (no uninitialised memory), with segment-anything's constructor values.
    assert not _all_finite(model)
    assert torch.equal(model.sam.pixel_mean.flatten(), torch.tensor(SAM_PIXEL_MEAN))
    assert torch.equal(model.sam.pixel_std.flatten(), torch.tensor(SAM_PIXEL_STD))
    assert torch.count_nonzero(model.sam.image_encoder.pos_embed) == 0
    assert torch.count_nonzero(model.sam.image_encoder.blocks[0].attn.rel_pos_h) == 0
    gaussian = model.sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    assert 0.3 < gaussian.std() < 3
    assert model.config.base_model_name_or_path == str(tiny_base_dir)


def test_reload_restores_non_persistent_sam_buffers(tiny_aurora_dir):
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    assert not _all_finite(model)
    assert torch.equal(model.sam.pixel_mean.flatten(), torch.tensor(SAM_PIXEL_MEAN))
    assert torch.equal(model.sam.pixel_std.flatten(), torch.tensor(SAM_PIXEL_STD))


# ----- inference -----
def test_segment_appends_answer_suffix_when_no_seg(tiny_aurora, tiny_clip):
    model, processor = tiny_aurora
    frames, audio = tiny_clip
    seg_id = model.config.seg_token_id
    out = model.segment(
        frames, audio, "the dog", processor=processor, max_new_tokens=4, sequence_bias={(seg_id,): -100.0}
    )
    assert not out.seg_emitted
    assert out.text.endswith(ANSWER_SUFFIX)
    assert out.sequences[0, -2].item() == seg_id or seg_id in out.sequences[0, -4:].tolist()
    assert out.mask_logits.shape == (10, 48, 64) and torch.isfinite(out.mask_logits).all()


def test_mask_answer_ids_reads_answers_as_inference_does(tiny_aurora):
    model, processor = tiny_aurora
    tokenizer, seg_id = processor.tokenizer, model.config.seg_token_id
    words = tokenizer("The target is dog.", add_special_tokens=False)["input_ids"]
    stop = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    # no [SEG]: end-of-turn and padding dropped, then the answer sentence appended
    answer, emitted = model.mask_answer_ids(words + stop, tokenizer)
    assert not emitted and answer[: len(words)] == words
    assert tokenizer.decode(answer) == "The target is dog. " + ANSWER_SUFFIX
    # with [SEG]: only the stop tokens go
    with_seg = words + tokenizer(" It is [SEG].", add_special_tokens=False)["input_ids"]
    assert seg_id in with_seg
    assert model.mask_answer_ids(with_seg + stop, tokenizer) == (with_seg, True)


def test_seg_embeddings_fallback_states_replace_rows_without_seg(tiny_aurora):
    model, _ = tiny_aurora
    seg_id, hidden_size = model.config.seg_token_id, model.config.text_config.hidden_size
    input_ids = torch.tensor([[5, seg_id, 6], [5, 6, 7]])
    hidden = torch.randn(2, 3, hidden_size)
    fallback = torch.randn(2, hidden_size)
    with torch.no_grad():
        seg, found = model.seg_embeddings(hidden, input_ids, fallback_states=fallback)
        expected = model.seg_projector(torch.stack([hidden[0, 1], fallback[1]]))
    assert found.tolist() == [True, False]
    torch.testing.assert_close(seg, expected)


def test_segment_masks_come_from_the_emitted_seg_state(tiny_aurora, tiny_clip):
    model, processor = tiny_aurora
    frames, audio = tiny_clip
    seg_id = model.config.seg_token_id
    out = model.segment(
        frames, audio, "the dog", processor=processor, max_new_tokens=3, sequence_bias={(seg_id,): 100.0}
    )
    assert out.seg_emitted and SEG_TOKEN in out.text and not out.text.endswith(ANSWER_SUFFIX)
    # Recompute with the regular forward (hidden_states[-1]): same [SEG] state, same masks.
    inputs = model.prepare_inputs(processor, frames, audio, "the dog")
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        full = model(
            input_ids=out.sequences, attention_mask=torch.ones_like(out.sequences), output_hidden_states=True, **extra
        )
        seg, found = model.seg_embeddings(full.hidden_states, out.sequences)
        sam = preprocess_frames(frames, 64)
        masks = model.predict_masks(
            seg, pixel_values=sam.pixel_values[None], input_sizes=sam.input_size, original_sizes=sam.original_size
        )[0]
    assert found.item()
    torch.testing.assert_close(masks, out.mask_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sharded", [False, True])
def test_seg_state_recorder_forwards_on_every_process_when_sharded(tiny_aurora, tiny_clip, sharded):
    """Answers whose `[SEG]` was fed during generation need no further forward; with sharded weights the recorder
    still runs its one forward (every process must join the same weight gathers), and the states are the same."""
    from aurora_trl.modeling.generation_states import SegStateRecorder

    model, processor = tiny_aurora
    frames, audio = tiny_clip
    inputs = model.prepare_batch_inputs(processor, [(frames, audio, "the dog"), (frames, audio, "the cat")])
    prompt = inputs["input_ids"].shape[1]
    seg, eos = model.seg_token_id, processor.tokenizer.eos_token_id

    def seg_then_end(batch_id, ids):  # `[SEG]`, then the end of turn: the `[SEG]` is fed back once
        return [seg] if len(ids) == prompt else [eos]

    calls = []
    hook = model.get_backbone().register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.no_grad(), SegStateRecorder(model, sharded=sharded) as recorder:
            generated = model.generate(
                **inputs, max_new_tokens=3, do_sample=False, prefix_allowed_tokens_fn=seg_then_end
            )
            completions = generated[:, prompt:].tolist()
            answers = [model.mask_answer_ids(row, processor.tokenizer)[0] for row in completions]
            during = len(calls)
            states = recorder.answer_states(completions, answers)
    finally:
        hook.remove()
    assert all(row[:2] == [seg, eos] for row in completions)
    assert len(calls) - during == int(sharded)
    # the full forward of prompt + completion (the prompts left-padded) gives the same states
    mask = torch.cat([inputs["attention_mask"], torch.ones_like(generated[:, prompt:])], dim=1)
    media = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        full = model.get_backbone()(input_ids=generated, attention_mask=mask, **media).last_hidden_state
    torch.testing.assert_close(states, full[:, prompt], atol=1e-5, rtol=1e-5)


def test_segment_batch_equals_one_clip_at_a_time(tiny_aurora):
    """Clips of different frame sizes, audio lengths and expressions (so prompts of different lengths, left-padded
    in the batch) give the texts, token sequences and masks of separate `segment` calls."""
    model, processor = tiny_aurora
    side = processor.tokenizer.padding_side
    rng = np.random.default_rng(1)
    clips = []
    for seconds, (h, w), expression in [
        (1, (48, 64), "the dog"),
        (3, (40, 40), "the cat that meows first"),
        (2, (32, 48), "x"),
    ]:
        frames = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(10)]
        clips.append((frames, rng.uniform(-0.1, 0.1, 16000 * seconds).astype("float32"), expression))
    batched = model.segment_batch(clips, processor=processor, max_new_tokens=6)
    for clip, got in zip(clips, batched):
        expected = model.segment(*clip, processor=processor, max_new_tokens=6)
        assert got.text == expected.text and got.seg_emitted == expected.seg_emitted
        assert torch.equal(got.sequences, expected.sequences)
        assert got.mask_logits.shape == (10, *clip[0][0].size[::-1])
        torch.testing.assert_close(got.mask_logits, expected.mask_logits, atol=1e-4, rtol=1e-4)
    assert processor.tokenizer.padding_side == side  # restored after the left-padded batch


def test_segment_batch_rejects_mixed_audio(tiny_aurora, tiny_clip):
    model, processor = tiny_aurora
    frames, audio = tiny_clip
    with pytest.raises(ValueError, match="every clip has audio or none"):
        model.segment_batch([(frames, audio, "a"), (frames, None, "b")], processor=processor)


def test_processor_and_config_round_trip(tiny_aurora_dir):
    processor = load_processor(tiny_aurora_dir)
    assert SEG_TOKEN in processor.tokenizer.get_vocab()
    config = json.loads((tiny_aurora_dir / "config.json").read_text())
    assert config["model_type"] == "aurora_qwen2_5_omni" and config["architectures"] == ["AuroraForSegmentation"]
    assert config["sam_image_size"] == 64 and config["seg_token_id"] == processor.tokenizer.convert_tokens_to_ids(
        SEG_TOKEN
    )


@pytest.mark.parametrize("size", [64, 128])
def test_tiny_model_at_other_sam_sizes(size):
    from aurora_trl.tiny import build_tiny_model

    model, _ = build_tiny_model(sam_image_size=size)
    with torch.no_grad():
        emb = model.encode_images(torch.zeros(2, 3, size, size))
    assert emb.shape == (2, 256, size // 16, size // 16)


def _rewrite_checkpoint(src, dst, rename, config_wrapper=None):
    """Copy a saved thinker folder, renaming its weight keys (and optionally nesting its config)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    save_file({rename(k): v for k, v in weights.items()}, str(dst / "model.safetensors"), metadata={"format": "pt"})
    if config_wrapper is not None:
        config = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps(config_wrapper(config)))
    return dst


def test_from_base_loads_a_full_omni_hub_layout(tiny_base_dir, tmp_path):
    # Qwen/Qwen2.5-Omni-7B layout: weights under `thinker.`, thinker config nested in a `qwen2_5_omni` config.
    hub_style = _rewrite_checkpoint(
        tiny_base_dir,
        tmp_path / "omni",
        rename=lambda k: "thinker." + k,
        config_wrapper=lambda c: {
            "model_type": "qwen2_5_omni",
            "architectures": ["Qwen2_5OmniModel"],
            "thinker_config": c,
        },
    )
    base = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny_base_dir)
    model, _ = AuroraForSegmentation.from_base(str(hub_style), config_overrides={**TINY_SAM, "sam_image_size": 64})
    assert model.config.get_text_config().hidden_size == 64
    assert torch.equal(base.state_dict()[LLM_WEIGHT], model.state_dict()[LLM_WEIGHT])


def test_from_base_refuses_a_checkpoint_whose_llm_does_not_load(tiny_base_dir, tmp_path):
    # transformers only logs missing weights; from_base must fail instead of returning a random LLM.
    broken = _rewrite_checkpoint(
        tiny_base_dir, tmp_path / "broken", rename=lambda k: k.replace("model.layers.", "decoder.layers.")
    )
    with pytest.raises(RuntimeError, match="backbone weights were not loaded"):
        AuroraForSegmentation.from_base(str(broken), config_overrides={**TINY_SAM, "sam_image_size": 64})
