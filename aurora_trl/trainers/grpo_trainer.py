"""AuroraGRPOTrainer: TRL's GRPOTrainer with audio-visual rollouts, a mask-IoU reward and AURORA's rollout mask loss.

TRL 1.16 handles images but not audio, and its fused LM head returns no hidden states. The overrides, in the order
a step meets them:

1. `_generate_and_score_completions`: decodes each row's audio and prepares its SAM frames (each clip encoded once,
   through the embedding cache, for all G rollouts); strips the audio block from the prompts, because TRL re-runs
   the processor on the prompt text with images only; adds the audio features to the batch (first dimension =
   completions, so they are shuffled and split with it) and a `rollout_index` that finds each row's masks later.
2. `_tokenize_prompts`: puts the waveform back into the prompt for generation (the processor expands `<|AUDIO|>`).
3. `_calculate_rewards`: one no-grad backbone forward on prompt + answer gives each rollout's `[SEG]` state, its
   masks and their IoU, written into the rows as the `iou` column that `iou_reward` returns. The answer is read as
   inference reads it: a completion without `[SEG]` gets `It is [SEG].` appended, so its reward is the IoU of the
   mask that inference would give it.
4. `_get_per_token_logps_and_entropies`: passes the audio features to every forward (policy, old, reference) and
   keeps the backbone's last hidden state; one chunk per call keeps the audio rows aligned.
5. `_compute_loss`: TRL's policy loss plus `(bce·BCE + dice·Dice) / accumulation steps` on the masks decoded from
   the `[SEG]` states of that same policy forward. A rollout that wrote no `[SEG]` has none there: its masks are
   decoded from the state the IoU forward found at its appended `[SEG]` (detached, so its mask loss trains the
   projector and the decoder only); `mask/seg_emitted` logs the share of rollouts that wrote one.
6. `log`: with `log_completions`, writes the logged prompts and completions as text, which every `report_to`
   backend takes (W&B refuses TRL's message lists).

Log-probs are read on the processor-expanded sequence (the Omni processor expands the image and audio placeholders
before tokenisation), so completion tokens are scored at their own positions, unlike AURORA's GRPO code.
"""

import numpy as np
import torch
import transformers
from trl import GRPOTrainer

from aurora_trl.losses import clip_mask_losses
from aurora_trl.metrics import clip_iou
from aurora_trl.modeling.embedding_cache import SamEmbeddingCache
from aurora_trl.modeling.sam import preprocess_frames
from aurora_trl.modeling.tokens import multimodal_token_ids, select_seg_hidden_states
from aurora_trl.reporting import conversation_text
from aurora_trl.rewards import REWARD_FUNCS
from aurora_trl.trainers.checkpointing import SafeSavingMixin
from aurora_trl.trainers.collator import SAMPLING_RATE, decode_audio, mask_tensor
from aurora_trl.trainers.grpo_config import AuroraGRPOConfig
from aurora_trl.trainers.utils import aurora_model, backbone_hidden_state, prepare_for_engine


AUDIO_KEYS = ("input_features", "feature_attention_mask")
AURORA_REWARDS = ("format", "class", "iou")


def without_audio_blocks(prompt: list[dict]) -> list[dict]:
    return [
        {**m, "content": [b for b in m["content"] if b.get("type") != "audio"]}
        if isinstance(m["content"], list)
        else m
        for m in prompt
    ]


def with_audio(prompt: list[dict], waveform) -> list[dict]:
    """The prompt with the waveform as the first block of its user message (where the data set's template has it)."""
    out, done = [], False
    for message in prompt:
        if message["role"] == "user" and not done:
            message = {**message, "content": [{"type": "audio", "audio": waveform}, *message["content"]]}
            done = True
        out.append(message)
    return out


class AuroraGRPOTrainer(SafeSavingMixin, GRPOTrainer):
    """[`~trl.GRPOTrainer`] for AURORA's Stage 3.

    Args:
        model: An [`~aurora_trl.modeling.AuroraForSegmentation`] (or its PEFT wrapper).
        reward_funcs (*optional*): TRL reward functions; default AURORA's `format`, `class` and `iou` rewards.
        args ([`AuroraGRPOConfig`]): Training configuration.
        train_dataset / eval_dataset: Data sets in the aurora-trl schema (`aurora-trl data build`).
        processing_class: The model's Omni processor.
        **kwargs: Passed on to [`~trl.GRPOTrainer`].
    """

    _tag_names = ["trl", "grpo", "aurora-trl"]
    _name = "AURORA GRPO"

    def __init__(
        self,
        model,
        reward_funcs=None,
        args: AuroraGRPOConfig = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs,
    ):
        if processing_class is None:
            raise ValueError("AuroraGRPOTrainer needs the model's processor as processing_class")
        if args.use_vllm:
            raise ValueError(
                "use_vllm is not supported: vLLM generates text only, while each AURORA rollout needs the policy's "
                "own hidden state at [SEG] (for its masks and IoU) and the clip's audio features. Set use_vllm: False."
            )
        base = aurora_model(model)
        # A sampled image/audio marker breaks the next forward; TRL suppresses only the image token.
        suppress = multimodal_token_ids(base.config) + [processing_class.tokenizer.pad_token_id]
        args.generation_kwargs = {"suppress_tokens": sorted(set(suppress)), **(args.generation_kwargs or {})}
        if args.beta > 0 and not hasattr(model, "disable_adapter"):
            # Without PEFT, TRL rebuilds the reference model by class name from the transformers namespace.
            setattr(transformers, type(base).__name__, type(base))
        if reward_funcs is None:
            reward_funcs = [REWARD_FUNCS[name] for name in AURORA_REWARDS]
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        prepare_for_engine(self)
        self.sam_cache = SamEmbeddingCache(args.sam_cache_dir)
        self._rollouts = {"train": {}, "eval": {}}  # mode -> rollout index -> (clip id, gt masks, sizes)
        self._clips = {"train": {}, "eval": {}}  # mode -> clip id -> SAM image embeddings
        self._answer_seg_states = {"train": None, "eval": None}  # mode -> (rollouts, H) states at the answers' [SEG]
        self._logps_audio = None  # audio features of the rows the next log-prob forward sees

    # ------------------------------------------------------------------------------------------ rollouts
    def _generate_and_score_completions(self, inputs):
        device = self.accelerator.device
        mode = "train" if self.model.training else "eval"
        base = aurora_model(self.model)
        self._waveforms = [decode_audio(x["audio"]) for x in inputs]
        features = self.processing_class.feature_extractor(
            self._waveforms,
            sampling_rate=SAMPLING_RATE,
            padding="max_length",
            return_attention_mask=True,
            return_tensors="pt",
        )
        audio = {
            "input_features": features["input_features"].to(device),
            "feature_attention_mask": features["attention_mask"].to(device),
        }
        self._logps_audio = audio

        # Ground truth and SAM embeddings, each clip encoded once for its G rollouts (and later epochs, if cached).
        rollouts, clips, sizes = {}, {}, {}
        for index, row in enumerate(inputs):
            clip_id = row.get("vid") or row["uid"]
            if clip_id not in clips:
                sam = preprocess_frames([img.convert("RGB") for img in row["images"]], base.config.sam_image_size)
                clips[clip_id] = self.sam_cache.get_or_compute(base, clip_id, sam.pixel_values)
                sizes[clip_id] = (sam.input_size, sam.original_size)
            rollouts[index] = (clip_id, mask_tensor(row["masks"]), *sizes[clip_id])
        self._rollouts[mode], self._clips[mode] = rollouts, clips

        stripped = [{**x, "prompt": without_audio_blocks(x["prompt"])} for x in inputs]
        output = super()._generate_and_score_completions(stripped)
        output.update(audio)
        output["rollout_index"] = torch.arange(len(inputs), device=device)
        return output

    def _tokenize_prompts(self, prompts):
        prompts = [with_audio(p, w) for p, w in zip(prompts, self._waveforms)]
        prompt_ids, images, multimodal_fields = super()._tokenize_prompts(prompts)
        self._prompt_ids, self._prompt_fields = prompt_ids, multimodal_fields  # reused by the IoU forward
        return prompt_ids, images, multimodal_fields

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        mode = "train" if self.model.training else "eval"
        ious = self._rollout_ious(completion_ids_list, mode)
        metric = self.accelerator.gather(torch.tensor(ious, device=self.accelerator.device)).mean().item()
        self._metrics[mode]["iou/mean"].append(metric)
        inputs = [{**row, "iou": iou} for row, iou in zip(inputs, ious)]
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    @torch.no_grad()
    def _rollout_ious(self, completion_ids_list, mode: str) -> list[float]:
        """IoU of each rollout's masks, as inference would decode them: `[SEG]` state from one backbone forward on
        prompt + answer, where a completion without `[SEG]` gets `It is [SEG].` appended (`mask_answer_ids`)."""
        device = self.accelerator.device
        base = aurora_model(self.model)
        tokenizer = self.processing_class.tokenizer
        pad = tokenizer.pad_token_id
        answers = [base.mask_answer_ids(c, tokenizer)[0] for c in completion_ids_list]
        rows = [list(p) + a for p, a in zip(self._prompt_ids, answers)]
        prompt_lengths = [len(p) for p in self._prompt_ids]
        longest_prompt = max(prompt_lengths)
        length = longest_prompt + max(len(a) for a in answers)
        # prompts left-padded, completions right-padded, as in TRL's batch
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long, device=device)
        attention_mask = torch.zeros_like(input_ids)
        for i, (row, n_prompt) in enumerate(zip(rows, prompt_lengths)):
            start = longest_prompt - n_prompt
            input_ids[i, start : start + len(row)] = torch.tensor(row, device=device)
            attention_mask[i, start : start + len(row)] = 1
        # the processor's chat-template output holds arrays, not tensors
        fields = {k: torch.as_tensor(np.asarray(v)).to(device) for k, v in self._prompt_fields.items()}
        hidden = base.get_backbone()(input_ids=input_ids, attention_mask=attention_mask, **fields).last_hidden_state
        states, _, _ = select_seg_hidden_states(hidden, input_ids, base.seg_token_id, attention_mask)
        self._answer_seg_states[mode] = states  # the mask loss's state for rollouts that wrote no `[SEG]`
        masks, targets = self._rollout_masks(base, base.project_seg(states), range(len(rows)), mode)
        return [clip_iou(m, t.to(m.device), self.args.iou_threshold) for m, t in zip(masks, targets)]

    def _rollout_masks(self, base, seg_embeddings, indices, mode: str):
        """Mask logits and ground truth of the given rollouts, decoded from their `[SEG]` embeddings."""
        rollouts = [self._rollouts[mode][int(i)] for i in indices]
        clip_ids = list(dict.fromkeys(r[0] for r in rollouts))
        embeddings = torch.stack([self._clips[mode][c] for c in clip_ids])
        clip_index = torch.tensor([clip_ids.index(r[0]) for r in rollouts])
        input_sizes = [next(r[2] for r in rollouts if r[0] == c) for c in clip_ids]
        original_sizes = [next(r[3] for r in rollouts if r[0] == c) for c in clip_ids]
        masks = base.predict_masks(
            seg_embeddings,
            image_embeddings=embeddings,
            clip_index=clip_index,
            input_sizes=input_sizes,
            original_sizes=original_sizes,
        )
        return masks, [r[1] for r in rollouts]

    # ------------------------------------------------------------------------------------------ loss
    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, **kwargs
    ):
        audio = self._logps_audio
        with backbone_hidden_state(model) as captured:
            out = super()._get_per_token_logps_and_entropies(
                lambda **model_inputs: model(**model_inputs, **audio),
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=input_ids.size(0),
                **kwargs,
            )
        self._last_hidden = captured.get("hidden")
        return out

    def _compute_loss(self, model, inputs):
        mode = "train" if self.model.training else "eval"
        # TRL buffers the generated batch and passes its slices again (num_iterations > 1, steps_per_generation > 1):
        # read the audio and rollout keys from a copy, never by popping them from the buffer.
        inputs = dict(inputs)
        self._logps_audio = {key: inputs.pop(key) for key in AUDIO_KEYS}
        indices = inputs.pop("rollout_index")
        loss = super()._compute_loss(model, inputs)
        if self.args.bce_loss_weight == 0 and self.args.dice_loss_weight == 0:
            return loss
        base = aurora_model(model)
        input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        # A rollout without `[SEG]` has no `[SEG]` state in this forward; its masks at inference come from an appended
        # `It is [SEG].`, whose state the IoU forward kept (detached): the mask loss trains the projector and the
        # decoder on it, rather than on the last token's state, which inference never decodes.
        fallback = self._answer_seg_states[mode][indices.to(self._answer_seg_states[mode].device)]
        seg, found = base.seg_embeddings(self._last_hidden, input_ids, attention_mask, fallback_states=fallback)
        masks, targets = self._rollout_masks(base, seg, indices.tolist(), mode)
        bce, dice = clip_mask_losses(masks, targets)
        mask_loss = self.args.bce_loss_weight * bce + self.args.dice_loss_weight * dice
        # TRL's policy loss is already scaled for gradient accumulation; this per-micro-batch mean is not.
        loss = loss + mask_loss / self.current_gradient_accumulation_steps
        self._metrics[mode]["mask/bce"].append(self.accelerator.gather(bce.detach()).mean().item())
        self._metrics[mode]["mask/dice"].append(self.accelerator.gather(dice.detach()).mean().item())
        self._metrics[mode]["mask/seg_emitted"].append(self.accelerator.gather(found.float()).mean().item())
        return loss

    # ------------------------------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL's completions table holds each prompt and completion as a list of messages whose content blocks differ
        # in their keys; W&B refuses that column ("Data row contained incompatible types"). Written as text, they go
        # to every backend and to the parquet files under output_dir/completions alike. The prompts were logged
        # without their audio block (stripped before TRL's rollout); `with_audio` marks it where the model heard it.
        if self.accelerator.is_main_process and self.log_completions:
            prompts = [
                p if isinstance(p, str) else conversation_text(with_audio(p, None)) for p in self._logs["prompt"]
            ]
            completions = [conversation_text(c) for c in self._logs["completion"]]
            for key, texts in (("prompt", prompts), ("completion", completions)):
                self._logs[key].clear()  # the same bounded deque TRL appends the next rollouts to
                self._logs[key].extend(texts)
        super().log(logs, start_time)
