"""AuroraGRPOTrainer on the tiny model: audio-visual rollouts, rewards and mask loss, aligned log-probs, bad input."""

import json
import math

import pytest
import torch
from datasets import load_from_disk

from aurora_trl.data_row import mask_tensor
from aurora_trl.metrics import clip_iou
from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.modeling_aurora import unwrap_aurora_model
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.modeling.sam import preprocess_frames
from aurora_trl.rewards import format_reward, iou_reward
from aurora_trl.text import ANSWER_SUFFIX
from aurora_trl.trainers.grpo_trainer import AuroraGRPOTrainer
from tests.helpers import grpo_config


def make_trainer(model_dir, dataset, tmp_path, dtype=torch.float32, **overrides):
    model = AuroraForSegmentation.from_pretrained(model_dir, dtype=dtype)
    seg = model.config.seg_token_id
    model = apply_training_policy(model, TrainingPolicy())
    return AuroraGRPOTrainer(
        model=model,
        args=grpo_config(tmp_path / "grpo", seg, **overrides),
        train_dataset=dataset,
        processing_class=load_processor(model_dir),
    )


def test_grpo_steps_see_audio_and_frames_and_train(tiny_aurora_dir, synth_dataset, tmp_path):
    trainer = make_trainer(tiny_aurora_dir, load_from_disk(str(synth_dataset))["train"], tmp_path)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    logged = trainer.state.log_history[0]
    for key in (
        "rewards/format_reward/mean",
        "rewards/class_reward/mean",
        "rewards/iou_reward/mean",
        "iou/mean",
        "mask/bce",
        "mask/dice",
        "completions/mean_length",
    ):
        assert math.isfinite(logged[key]), key
    changed = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(before[n], p)]
    assert any("lora_" in n for n in changed) and any("mask_decoder" in n for n in changed)
    assert len(changed) == len(before)
    # each clip was encoded once for its three rollouts
    assert trainer.sam_cache.misses == 2 * 1 and trainer.sam_cache.hits["memory"] == 0


def test_logprobs_are_read_at_the_completion_tokens(tiny_aurora_dir, synth_dataset, tmp_path):
    """TRL's fused log-probs with the rollouts' image and audio tensors equal log_softmax of a plain full forward
    (AURORA's GRPO read them at unexpanded positions)."""
    dataset = load_from_disk(str(synth_dataset))["train"]
    trainer = make_trainer(tiny_aurora_dir, dataset, tmp_path)
    with torch.no_grad():
        batch = trainer._generate_and_score_completions([dataset[0]] * 3)
        input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        n = batch["completion_ids"].size(1)
        ours, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention_mask, n)
        multimodal = trainer._rollouts["train"].model_inputs(range(3))
        logits = trainer.model(input_ids=input_ids, attention_mask=attention_mask, **multimodal).logits
    assert set(multimodal) == {"pixel_values", "image_grid_thw", "input_features", "feature_attention_mask"}
    reference = torch.log_softmax(logits[:, -n - 1 : -1].float() / trainer.temperature, dim=-1)
    reference = reference.gather(-1, batch["completion_ids"][..., None])[..., 0]
    mask = batch["completion_mask"].bool()
    assert mask.sum() > 0
    assert (ours[mask] - reference[mask]).abs().max().item() < 1e-5


def test_each_group_decodes_and_processes_its_clip_once(tiny_aurora_dir, synth_dataset, tmp_path, monkeypatch):
    """2 prompts x G = 3 rollouts: each prompt's waveform goes through Whisper's feature extractor once and its 10
    frames through the image processor once (TRL alone would process them for each rollout, twice), its masks are
    converted once, and SAM encodes each clip once."""
    import aurora_trl.trainers.rollouts as rollouts_module

    dataset = load_from_disk(str(synth_dataset))["train"]
    trainer = make_trainer(tiny_aurora_dir, dataset, tmp_path)
    processor = trainer.processing_class
    counts = {"waveforms": 0, "frames": 0, "mask sets": 0}

    def counting(owner, name, key, size):
        original = getattr(type(owner), name)

        def wrapper(self, items, *args, **kwargs):
            counts[key] += size(items)
            return original(self, items, *args, **kwargs)

        monkeypatch.setattr(type(owner), name, wrapper)

    counting(processor.feature_extractor, "__call__", "waveforms", len)
    counting(processor.image_processor, "__call__", "frames", len)
    original_masks = rollouts_module.mask_tensor
    monkeypatch.setattr(
        rollouts_module,
        "mask_tensor",
        lambda masks: counts.__setitem__("mask sets", counts["mask sets"] + 1) or original_masks(masks),
    )
    rows = [dataset[0]] * 3 + [dataset[2]] * 3
    with torch.no_grad():
        trainer._generate_and_score_completions(rows)
    assert counts == {"waveforms": 2, "frames": 20, "mask sets": 2}
    assert trainer.sam_cache.misses == len({dataset[0]["vid"], dataset[2]["vid"]})  # per clip, not per prompt


def test_training_decodes_each_groups_frames_and_masks_once(tiny_aurora_dir, synth_dataset, tmp_path, monkeypatch):
    """TRL reads each row G times; `datasets` would decode its 10 frames and 10 masks each time. The trainer hands
    TRL the rows without them and decodes them from their stored bytes once per group."""
    from datasets.features import Image as ImageFeature
    from PIL import Image

    decoded = {"datasets": 0, "ours": 0}
    original_decode, original_open = ImageFeature.decode_example, Image.open

    def counting_decode(self, value, *args, **kwargs):
        decoded["datasets"] += 1
        return original_decode(self, value, *args, **kwargs)

    def counting_open(*args, **kwargs):
        decoded["ours"] += 1
        return original_open(*args, **kwargs)

    monkeypatch.setattr(ImageFeature, "decode_example", counting_decode)
    monkeypatch.setattr(Image, "open", counting_open)
    dataset = load_from_disk(str(synth_dataset))["train"]
    trainer = make_trainer(tiny_aurora_dir, dataset, tmp_path, max_steps=2)
    assert not {"images", "masks"} & set(trainer.train_dataset.column_names)
    trainer.train()
    assert decoded == {"datasets": 0, "ours": 2 * (10 + 10)}  # 2 steps x 1 group: 10 frames, 10 masks


def test_null_clips_give_finite_losses_and_rewards(tiny_aurora_dir, synth_dataset, tmp_path):
    null_rows = load_from_disk(str(synth_dataset))["test_n"]
    trainer = make_trainer(tiny_aurora_dir, null_rows, tmp_path, max_steps=1)
    trainer.train()
    logged = trainer.state.log_history[0]
    assert all(math.isfinite(logged[k]) for k in ("loss", "mask/bce", "mask/dice", "iou/mean", "reward"))


def test_vllm_is_refused_at_start_with_the_reason(tiny_aurora_dir, synth_dataset, tmp_path):
    with pytest.raises(ValueError, match="use_vllm is not supported.*hidden state at \\[SEG\\]"):
        make_trainer(tiny_aurora_dir, load_from_disk(str(synth_dataset))["train"], tmp_path, use_vllm=True)


@pytest.mark.parametrize("seg_bias", [-100.0, 8.0], ids=["no_seg", "many_seg"])
def test_odd_rollouts_and_none_rewards_keep_the_loss_finite(tiny_aurora_dir, synth_dataset, tmp_path, seg_bias):
    """Rollouts with no [SEG] (masks from the appended `It is [SEG].`) or many, and a reward that is None for some
    rows."""

    def sometimes_none(completions, **kwargs):
        return [None if i % 2 else 0.5 * (len(c) % 3) for i, c in enumerate(completions)]

    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    seg = model.config.seg_token_id
    args = grpo_config(tmp_path / "grpo", seg, max_steps=1, generation_kwargs={"sequence_bias": [[[seg], seg_bias]]})
    trainer = AuroraGRPOTrainer(
        model=apply_training_policy(model, TrainingPolicy()),
        reward_funcs=[format_reward, iou_reward, sometimes_none],
        args=args,
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=load_processor(tiny_aurora_dir),
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert all(math.isfinite(logged[k]) for k in ("loss", "reward", "mask/bce", "mask/dice", "iou/mean"))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert (logged["mask/seg_emitted"] == 0) == (seg_bias < 0), logged["mask/seg_emitted"]


def test_format_reward_gets_the_token_ids_and_the_seg_id(tiny_aurora_dir, synth_dataset, tmp_path):
    """The trainer gives reward functions each rollout's token ids and the model's `[SEG]` id, so `format_reward`
    checks the real `[SEG]` token, not only the text."""
    seen = []

    def recording(completions, completion_ids, seg_token_id, **kwargs):
        seen.append((completions, completion_ids, seg_token_id))
        return [0.0] * len(completions)

    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    seg = model.config.seg_token_id
    trainer = AuroraGRPOTrainer(
        model=apply_training_policy(model, TrainingPolicy()),
        reward_funcs=[format_reward, recording],
        args=grpo_config(tmp_path / "grpo", max_steps=1, generation_kwargs={"sequence_bias": [[[seg], 6.0]]}),
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=load_processor(tiny_aurora_dir),
    )
    trainer.train()
    ((completions, ids, seg_ids),) = seen
    assert seg_ids == [seg] * len(completions)
    assert any(seg in row for row in ids)  # the sampling bias makes some rollouts write it
    text_only = format_reward(completions)
    with_tokens = format_reward(completions, completion_ids=ids, seg_token_id=seg_ids)
    assert with_tokens == [t * float(row.count(seg) == 1) for t, row in zip(text_only, ids)]
    logged = trainer.state.log_history[0]["rewards/format_reward/mean"]
    assert logged == pytest.approx(sum(with_tokens) / len(with_tokens))


@pytest.mark.parametrize(
    "seg_bias, checkpointing, dtype, model",
    [
        (-100.0, False, torch.float32, "tiny_aurora_dir"),
        (5.0, False, torch.float32, "tiny_aurora_dir"),
        (5.0, True, torch.float32, "tiny_aurora_dir"),
        (5.0, False, torch.bfloat16, "tiny_aurora_dir"),
        (-100.0, False, torch.float32, "tiny_local_aurora_dir"),
        (5.0, False, torch.float32, "tiny_local_aurora_dir"),
        (-100.0, False, torch.bfloat16, "tiny_local_aurora_dir"),
    ],
    ids=[
        "none_wrote_seg",
        "some_wrote_seg",
        "some_wrote_seg_gradient_checkpointing",
        "some_wrote_seg_bf16",
        "none_wrote_seg_sliding_window",
        "some_wrote_seg_sliding_window",
        "none_wrote_seg_sliding_window_bf16",
    ],
)
def test_seg_states_from_generation_equal_a_full_forward(
    request, synth_dataset, tmp_path, seg_bias, checkpointing, dtype, model
):
    """Each rollout's `[SEG]` state comes from generation: where it wrote `[SEG]`, from the step that fed it; where
    it did not, from `It is [SEG].` forwarded on the generation's KV cache (as inference appends it). Both equal the
    state a full forward of prompt + answer gives (to 1e-5 in float32, to bf16's rounding of values near 1-2 in
    bf16), and the IoU reward is that of the masks decoded from it; a rollout without `[SEG]` is not scored on its
    last token's state. The same holds for a model whose top layer has a sliding window (whose windows must not
    reach the masked slots of a rollout that ended early)."""
    tiny_aurora_dir = request.getfixturevalue(model)
    dataset = load_from_disk(str(synth_dataset))["train"]
    seg = json.loads((tiny_aurora_dir / "config.json").read_text())["seg_token_id"]
    eos = load_processor(tiny_aurora_dir).tokenizer.eos_token_id
    bias = [[[seg], seg_bias], [[eos], 0.5]]  # some rollouts end early: cached slots after their end are masked
    trainer = make_trainer(
        tiny_aurora_dir,
        dataset,
        tmp_path,
        dtype=dtype,
        generation_kwargs={"sequence_bias": bias},
        gradient_checkpointing=checkpointing,
        bf16=dtype == torch.bfloat16,
    )
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    iou_tolerance = 1e-6 if dtype == torch.float32 else 1e-2  # bf16: a few pixels at the threshold may flip
    trainer.model.train()  # as in a training step (gradient checkpointing applies in training mode)
    if checkpointing:  # as the Trainer's training loop turns it on
        trainer.model.gradient_checkpointing_enable(trainer.args.gradient_checkpointing_kwargs)
    assert unwrap_aurora_model(trainer.model).is_gradient_checkpointing == checkpointing
    base, tokenizer = unwrap_aurora_model(trainer.model), trainer.processing_class.tokenizer
    rows = [dataset[0]] * 3 + [dataset[1]] * 3
    kinds = set()
    with torch.no_grad():
        batch = trainer._generate_and_score_completions(rows)
        rollouts = trainer._rollouts["train"]
        assert len(rollouts.groups) == 2 and rollouts.group_of == [0, 0, 0, 1, 1, 1]
        for i, row in enumerate(rows):
            completion = batch["completion_ids"][i][batch["completion_mask"][i].bool()].tolist()
            answer, emitted = base.mask_answer_ids(completion, tokenizer)
            assert emitted == (seg in completion)
            kinds.add(emitted)
            if not emitted:
                assert tokenizer.decode(answer).endswith(ANSWER_SUFFIX)
            prompt = batch["prompt_ids"][i][batch["prompt_mask"][i].bool()].tolist()
            ids = torch.tensor([prompt + answer])
            hidden = base.get_backbone()(
                input_ids=ids, attention_mask=torch.ones_like(ids), **rollouts.model_inputs([i])
            ).last_hidden_state[0]
            last_seg = len(prompt) + len(answer) - 1 - answer[::-1].index(seg)
            torch.testing.assert_close(rollouts.seg_states[i], hidden[last_seg], atol=tolerance, rtol=tolerance)
            if not emitted:  # the old fallback, the last token's state, would differ
                assert not torch.allclose(rollouts.seg_states[i], hidden[len(prompt) + len(completion) - 1], atol=1e-3)
            sam = preprocess_frames([image.convert("RGB") for image in row["images"]], base.config.sam_image_size)
            masks = base.predict_masks(
                base.project_seg(hidden[last_seg][None]),
                pixel_values=sam.pixel_values[None],
                input_sizes=sam.input_size,
                original_sizes=sam.original_size,
            )[0]
            assert rollouts.ious[i] == pytest.approx(clip_iou(masks, mask_tensor(row["masks"])), abs=iou_tolerance)
    assert kinds == ({False} if seg_bias < 0 else {False, True})


def test_qlora_4bit_grpo_step_through_the_script(tiny_aurora_dir, synth_dataset, tmp_path):
    from bitsandbytes.nn import Linear4bit
    from trl import ModelConfig

    from aurora_trl.scripts.grpo import AuroraGRPOScriptArguments, main

    seg = AuroraForSegmentation.from_pretrained(tiny_aurora_dir).config.seg_token_id
    trainer = main(
        AuroraGRPOScriptArguments(dataset_name=str(synth_dataset)),
        grpo_config(tmp_path / "grpo", seg, max_steps=1),
        ModelConfig(model_name_or_path=str(tiny_aurora_dir), use_peft=True, load_in_4bit=True, dtype="float32"),
    )
    base = trainer.model.get_base_model()
    assert isinstance(base.model.language_model.layers[0].self_attn.q_proj.base_layer, Linear4bit)
    assert not any(isinstance(m, Linear4bit) for m in base.sam.modules())  # SAM stays in full precision
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    assert (tmp_path / "grpo" / "merged" / "config.json").is_file()


@pytest.mark.parametrize("lora", [True, False], ids=["lora_reference", "copy_reference"])
def test_kl_term_with_a_reference_model(tiny_aurora_dir, synth_dataset, tmp_path, lora):
    """beta > 0 (AURORA declares 0.04 but never applies it): with LoRA the reference is the adapter-free policy;
    without, TRL rebuilds it from the checkpoint by class name."""
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    seg = model.config.seg_token_id
    model = apply_training_policy(model, TrainingPolicy(use_lora=lora, train_llm=not lora))
    trainer = AuroraGRPOTrainer(
        model=model,
        args=grpo_config(tmp_path / "grpo", seg, max_steps=1, beta=0.04),
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=load_processor(tiny_aurora_dir),
    )
    assert (trainer.ref_model is None) == lora
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["kl"])


class RecordingTrainer(AuroraGRPOTrainer):
    """Checks, at every loss, that each row of TRL's shuffled, buffered slice reads its own rollout."""

    def _generate_single_turn(self, prompt_ids, *args, **kwargs):
        completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        self.generated[self._mode()] = {"prompts": [list(p) for p in prompt_ids], "completions": completion_ids}
        return completion_ids, logprobs

    def _compute_loss(self, model, inputs):
        mode = self._mode()
        rollouts, generated = self._rollouts[mode], self.generated[mode]
        for row, index in enumerate(inputs["rollout_index"].tolist()):
            prompt = inputs["prompt_ids"][row][inputs["prompt_mask"][row].bool()].tolist()
            completion = inputs["completion_ids"][row][inputs["completion_mask"][row].bool()].tolist()
            group = rollouts.groups[rollouts.group_of[index]]
            self.checked.append(
                prompt == group.prompt_ids == generated["prompts"][index]
                and completion == generated["completions"][index]
            )
        self.order[mode].append(inputs["rollout_index"].tolist())
        return super()._compute_loss(model, inputs)


def test_buffered_shuffled_rollouts_read_their_own_clip_also_after_an_evaluation(
    tiny_aurora_dir, synth_dataset, tmp_path
):
    """`steps_per_generation: 2`, `num_iterations: 2`: TRL generates 2 prompts x 3 rollouts, shuffles them and hands
    each half to two optimizer steps each; an evaluation (its own rollouts) runs between. Every row of every slice
    must read its own prompt, completion and rollout."""
    data = load_from_disk(str(synth_dataset))
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    args = grpo_config(
        tmp_path / "grpo",
        model.config.seg_token_id,
        num_iterations=2,
        steps_per_generation=2,
        max_steps=4,
        max_completion_length=6,
        eval_strategy="steps",
        eval_steps=1,
        per_device_eval_batch_size=3,
    )
    trainer = RecordingTrainer(
        model=apply_training_policy(model, TrainingPolicy()),
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["train"].select(range(1)),
        processing_class=load_processor(tiny_aurora_dir),
    )
    trainer.checked, trainer.generated, trainer.order = [], {}, {"train": [], "eval": []}
    trainer.train()
    assert trainer.state.global_step == 4
    assert len(trainer.checked) == 4 * 3 + 4 * 3 and all(trainer.checked)  # 4 train slices, 4 evaluations
    first, second, third, fourth = trainer.order["train"]
    assert sorted(first + second) == list(range(6)) and (first, second) == (third, fourth)  # one batch, twice
    assert (first, second) != ([0, 1, 2], [3, 4, 5])  # ... shuffled
    assert all(math.isfinite(entry["mask/bce"]) for entry in trainer.state.log_history if "mask/bce" in entry)


def test_grpo_recipe_is_aurora_loss_and_one_dropout_free_policy(tiny_aurora_dir, synth_dataset, tmp_path):
    """recipes/grpo.yaml: AURORA's per-rollout mean (`loss_type: grpo`, not TRL's default `dapo`), rollouts long
    enough for a CoT, and no dropout anywhere, LoRA's included, so the rollouts (and the [SEG] states read during
    them) and the loss forward see one policy."""
    from pathlib import Path

    from torch import nn

    from aurora_trl.scripts.launch import parse_any_recipe

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "grpo.yaml"
    _, (_, training_args, model_args) = parse_any_recipe(recipe, ["--use_cpu", "True", "--bf16", "False"])
    assert training_args.loss_type == "grpo"
    assert training_args.max_completion_length >= 1024  # AURORA's 150 cuts a four-step CoT before `It is [SEG].`
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir)
    model = apply_training_policy(model, TrainingPolicy(lora_dropout=model_args.lora_dropout))
    assert any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())  # the recipe's LoRA has dropout
    trainer = AuroraGRPOTrainer(
        model=model,
        args=grpo_config(tmp_path / "grpo", disable_dropout=training_args.disable_dropout),
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=load_processor(tiny_aurora_dir),
    )
    assert all(m.p == 0 for m in trainer.model.modules() if isinstance(m, nn.Dropout))
