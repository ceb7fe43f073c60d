"""AURORA's segmentation model on a transformers audio-visual LLM: backbone + `[SEG]` + projector + SAM.

Design
------
**Subclass, not wrapper.** [`AuroraForSegmentation`] *is* a `Qwen2_5OmniThinkerForConditionalGeneration` with two
extra sub-modules (`seg_projector`, `sam`). Compared with a wrapper holding the thinker (reference notes, omni-notes
§2.1), the subclass keeps everything TRL relies on without delegation code: `generate` with the thinker's 3-D
(TMRoPE) position logic, `base_model` = the modality-merging backbone that TRL's fused LM head calls, the
output embeddings, and the Hub checkpoint layout (a saved AURORA model's LLM/tower keys are those of a plain
thinker). Its one trap, transformers 5 skipping checkpoint-key conversion for classes outside the library (the LLM
of a base checkpoint then silently stays random), is fixed by registering the thinker's conversion mapping for
this class name (below), and `from_base` checks that no backbone weight was left missing.

**Backbone seam.** Everything AURORA adds lives in [`AuroraSegmentationMixin`] (and the config fields in
`AuroraSegmentationFields`). The backbone-specific facts are a few class attributes: the module paths of the
audio and vision towers, the LoRA target regex of the LLM attention, and the class whose checkpoint mapping to
reuse. Another transformers audio-visual model is added by one model class (plus its two-base config class)::

    class AuroraQwen3OmniConfig(Qwen3OmniMoeThinkerConfig, AuroraSegmentationFields):
        model_type = "aurora_qwen3_omni"

    class AuroraQwen3OmniForSegmentation(AuroraSegmentationMixin, Qwen3OmniMoeThinkerForConditionalGeneration):
        config_class = AuroraQwen3OmniConfig
        _aurora_base_class_name = "Qwen3OmniMoeThinkerForConditionalGeneration"
        ...  # tower prefixes / LoRA regex if the names differ

**One `[SEG]` convention** everywhere (SFT, GRPO, inference): the final-layer state at the last `[SEG]`, or at the
last attended token of a sequence without one (`tokens.py`, with the other token conventions).

**Mask decoding.** One projected `[SEG]` embedding prompts all T frames of its clip; (prompt, frame) pairs are
decoded in one batch by `sam.decode_masks` (SAM's `MaskDecoder.forward` would pair every prompt with every frame).
The frozen image encoder runs once per clip; [`~aurora_trl.modeling.embedding_cache.SamEmbeddingCache`] reuses
its output across a GRPO group and across epochs.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import Qwen2_5OmniThinkerForConditionalGeneration
from transformers.conversion_mapping import (
    get_checkpoint_conversion_mapping,
    register_checkpoint_conversion_mapping,
)
from transformers.utils import ModelOutput

from ..text import ANSWER_SUFFIX, MAX_ANSWER_TOKENS, build_prompt
from .configuration_aurora import AuroraConfig
from .processing import load_processor
from .sam import build_sam, decode_masks, init_sam_module, postprocess_masks, preprocess_frames
from .tokens import add_seg_token, multimodal_token_ids, select_seg_hidden_states, stop_at_end_of_turn


logger = logging.getLogger(__name__)


@dataclass
class SegmentationOutput(ModelOutput):
    """Output of [`AuroraSegmentationMixin.segment`].

    Args:
        text (`str`): The decoded answer (reasoning), with `It is [SEG].` appended when the model emitted no `[SEG]`.
        mask_logits (`torch.Tensor` of shape `(T, H, W)`): Mask logits at the frames' size (`> 0` = foreground).
        seg_emitted (`bool`): Whether the model generated `[SEG]` itself.
        sequences (`torch.LongTensor` of shape `(1, L)`): Prompt + answer ids the masks were decoded from.
    """

    text: str | None = None
    mask_logits: torch.Tensor | None = None
    seg_emitted: bool | None = None
    sequences: torch.LongTensor | None = None


class AuroraSegmentationMixin:
    """Everything AURORA adds to an audio-visual LLM: `[SEG]` handling, the projector, SAM, and their helpers.

    Mixed in *before* a transformers `...ForConditionalGeneration` class. The backbone-specific facts are the
    class attributes below.
    """

    # Modules that are frozen by AURORA's policy (prefixes of parameter names of the un-wrapped model).
    _aurora_audio_tower: str = "model.audio_tower"
    _aurora_vision_tower: str = "model.visual"
    # PEFT full-matches a string target: this regex puts LoRA on the LLM's q/v projections only (the plain names
    # "q_proj"/"v_proj" also hit the audio encoder and SAM's mask-decoder attention). `.*` covers PEFT prefixes.
    _aurora_lora_target_regex: str = r".*language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"
    # The native class whose checkpoint-key conversion applies to this class too.
    _aurora_base_class_name: str = "Qwen2_5OmniThinkerForConditionalGeneration"
    # Missing keys that are expected when building from a base checkpoint (everything AURORA adds).
    _aurora_new_module_prefixes: tuple[str, ...] = ("seg_projector.", "sam.")
    # Precision policy. What trains in full (the projector, the mask decoder) and SAM's small prompt encoder stay
    # float32 when the model is loaded in bf16 or fp16 (transformers reads this list): their updates at GRPO's
    # learning rate are below bf16's resolution, and AdamW keeps its state in the weights' dtype.
    _keep_in_fp32_modules_strict = ["seg_projector", "sam.prompt_encoder", "sam.mask_decoder"]

    @classmethod
    def unquantized_modules(cls) -> list[str]:
        """Module-name prefixes that 4-bit (QLoRA) loading leaves unquantised: everything but the LLM's layers.

        The towers and SAM are frozen encoders whose features the LLM was trained on; the LM head holds the trained
        `[SEG]` row; the projector and the mask decoder train in full. bitsandbytes matches these from the start of
        a module name (or as its suffix), so the towers are named by their full paths.
        """
        return [cls._aurora_audio_tower, cls._aurora_vision_tower, "sam", "seg_projector", "lm_head"]

    def _build_aurora_modules(self, config) -> None:
        hidden = config.get_text_config().hidden_size
        # AURORA/LISA `text_hidden_fcs`: hidden -> hidden -> SAM prompt width (dropout 0 omitted).
        self.seg_projector = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, config.sam_prompt_dim)
        )
        self.sam = build_sam(config.sam_spec)

    def _init_weights(self, module):
        # SAM's raw parameters/buffers (position embeddings, rel-pos tables, Fourier matrix, pixel statistics) are
        # unknown to transformers' default init and would keep uninitialised memory after from_pretrained.
        if not init_sam_module(module):
            super()._init_weights(module)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' `from_pretrained`, then [`stop_at_end_of_turn`] with the folder's tokenizer when the saved
        generation config names no end-of-turn token."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if model.generation_config.eos_token_id is None:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path)
            except (OSError, ValueError) as error:
                logger.warning(
                    "%s names no end-of-turn token and has no tokenizer (%s): generation runs to max_new_tokens "
                    "unless generation_config.eos_token_id is set",
                    pretrained_model_name_or_path,
                    error,
                )
            else:
                stop_at_end_of_turn(model.generation_config, tokenizer)
        return loaded

    # ----- the backbone seam -----
    def get_backbone(self) -> nn.Module:
        """The module that merges text, image and audio embeddings and returns `last_hidden_state` (the one TRL's
        fused LM head calls; hook it to get `[SEG]` states without a second forward)."""
        return self.model

    # ----- [SEG] -----
    @property
    def seg_token_id(self) -> int:
        if self.config.seg_token_id is None:
            raise ValueError("config.seg_token_id is not set: add [SEG] with add_seg_token(tokenizer) first")
        return self.config.seg_token_id

    def seg_embeddings(
        self,
        hidden_states: torch.Tensor | Sequence[torch.Tensor],
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        fallback_states: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.BoolTensor]:
        """Projected `[SEG]` embeddings `(B, sam_prompt_dim)` and the `found` flags (see
        [`select_seg_hidden_states`] for which state is used). `fallback_states` `(B, H)`, when given, replace the
        states of the rows that hold no `[SEG]`."""
        states, found, _ = select_seg_hidden_states(hidden_states, input_ids, self.seg_token_id, attention_mask)
        if fallback_states is not None:
            states = torch.where(found[:, None], states, fallback_states.to(states))
        return self.project_seg(states), found

    def project_seg(self, states: torch.Tensor) -> torch.Tensor:
        """`[SEG]` hidden states `(B, H)` through the projector: SAM prompt embeddings `(B, sam_prompt_dim)`."""
        dtype = next(self.seg_projector.parameters()).dtype  # works under PEFT's ModulesToSaveWrapper too
        return self.seg_projector(states.to(dtype))

    # ----- SAM -----
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """SAM image embeddings `(N, C, h, w)` of pre-processed frames `(N, 3, S, S)` (see `preprocess_frames`).

        Runs without autograd when the encoder is frozen (AURORA's policy), which saves its activations.
        """
        encoder = self.sam.image_encoder
        weight = encoder.patch_embed.proj.weight
        trainable = any(p.requires_grad for p in encoder.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            return encoder(pixel_values.to(device=weight.device, dtype=weight.dtype))

    def predict_masks(
        self,
        seg_embeddings: torch.Tensor,
        image_embeddings: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        clip_index: torch.LongTensor | None = None,
        input_sizes: Sequence[tuple[int, int]] | tuple[int, int] | None = None,
        original_sizes: Sequence[tuple[int, int]] | tuple[int, int] | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Mask logits for every frame of the clip each `[SEG]` embedding belongs to.

        Args:
            seg_embeddings (`torch.Tensor` of shape `(B, C)`):
                Projected `[SEG]` embeddings ([`seg_embeddings`]).
            image_embeddings (`torch.Tensor` of shape `(K, T, C, h, w)`, *optional*):
                SAM image embeddings of K clips (e.g. from the embedding cache). Give this or `pixel_values`.
            pixel_values (`torch.Tensor` of shape `(K, T, 3, S, S)`, *optional*):
                Pre-processed frames; encoded here.
            clip_index (`torch.LongTensor` of shape `(B,)`, *optional*):
                Clip of each embedding. Defaults to all 0 when K = 1 (a GRPO group of one clip), else `arange(B)`.
            input_sizes, original_sizes (one `(h, w)` or one per clip, *optional*):
                Size of the resized frames inside the SAM square, and of the original frames. Without
                `original_sizes` the low-resolution logits `(B, T, 4h, 4w)` are returned.

        Returns:
            `list[torch.Tensor]`: one `(T, H, W)` tensor per embedding (at its clip's original size), or the
            low-resolution tensor when `original_sizes` is `None`.
        """
        if image_embeddings is None:
            if pixel_values is None:
                raise ValueError("predict_masks needs image_embeddings or pixel_values")
            k, t = pixel_values.shape[:2]
            image_embeddings = self.encode_images(pixel_values.flatten(0, 1)).unflatten(0, (k, t))
        num_clips, num_frames = image_embeddings.shape[:2]
        batch = seg_embeddings.shape[0]
        if clip_index is None:
            if num_clips not in (1, batch):
                raise ValueError(f"{num_clips} clips for {batch} [SEG] embeddings: pass clip_index")
            clip_index = torch.zeros(batch, dtype=torch.long) if num_clips == 1 else torch.arange(batch)
        clip_index = clip_index.to(image_embeddings.device)
        if num_clips == 1:  # a view, no copy of the embeddings for the G prompts of a group
            pairs = image_embeddings.expand(batch, *image_embeddings.shape[1:])
        else:
            pairs = image_embeddings[clip_index]
        prompts = seg_embeddings.to(pairs.dtype)[:, None].expand(batch, num_frames, seg_embeddings.shape[-1])
        low_res = decode_masks(self.sam, pairs.flatten(0, 1), prompts.flatten(0, 1)).unflatten(0, (batch, num_frames))
        if original_sizes is None:
            return low_res
        size = self.config.sam_image_size
        per_clip = lambda sizes: [sizes] * num_clips if isinstance(sizes[0], int) else list(sizes)  # noqa: E731
        input_sizes = per_clip(input_sizes if input_sizes is not None else (size, size))
        original_sizes = per_clip(original_sizes)
        return [
            postprocess_masks(low_res[b], size, tuple(input_sizes[c]), tuple(original_sizes[c]))
            for b, c in enumerate(clip_index.tolist())
        ]

    # ----- inference -----
    @torch.no_grad()
    def segment(
        self,
        frames: Sequence,
        audio=None,
        expression: str = "",
        processor=None,
        max_new_tokens: int = MAX_ANSWER_TOKENS,
        sampling_rate: int = 16000,
        **generate_kwargs,
    ) -> SegmentationOutput:
        """Reason about a clip and segment the referred object in every frame (greedy decoding).

        Args:
            frames (`Sequence[PIL.Image.Image]`):
                The T frames of the clip (all the same size).
            audio (`np.ndarray`, *optional*):
                Mono waveform at `sampling_rate` (16 kHz for the Omni feature extractor); `None` for no audio.
            expression (`str`):
                The referring expression.
            processor (*optional*):
                The model's processor; loaded from `config._name_or_path` when omitted.
            max_new_tokens (`int`, *optional*, defaults to `2048`):
                Length limit of the answer (AURORA's); generation stops earlier at the end of turn.
            sampling_rate (`int`, *optional*, defaults to `16000`):
                Sampling rate of `audio`.
            **generate_kwargs:
                Further `generate` arguments (e.g. `sequence_bias`); decoding stays greedy.

        Returns:
            [`SegmentationOutput`]: the answer text and `(T, H, W)` mask logits at the frames' size. As in AURORA,
            `It is [SEG].` is appended to the answer when the model emitted no `[SEG]`, and the masks are decoded
            from that appended token.
        """
        clip = (frames, audio, expression)
        return self.segment_batch([clip], processor, max_new_tokens, sampling_rate, **generate_kwargs)[0]

    @torch.no_grad()
    def segment_batch(
        self,
        clips: Sequence[tuple],
        processor=None,
        max_new_tokens: int = MAX_ANSWER_TOKENS,
        sampling_rate: int = 16000,
        **generate_kwargs,
    ) -> list[SegmentationOutput]:
        """[`segment`] for several clips at once: one batched `generate` (prompts left-padded), one batched
        forward for the `[SEG]` states, one batched SAM decode.

        Args:
            clips (`Sequence[tuple]`):
                `(frames, audio, expression)` per clip; frame sizes may differ between clips, and either every clip
                has audio or none has (the prompt differs).

        Returns:
            `list[SegmentationOutput]`, one per clip, as [`segment`] returns.
        """
        if not clips:
            return []
        if len({audio is None for _, audio, _ in clips}) > 1:
            raise ValueError("segment_batch: either every clip has audio or none has; split the batch")
        if processor is None:
            processor = load_processor(self.config._name_or_path)
        tokenizer = processor.tokenizer
        inputs = self.prepare_batch_inputs(processor, clips, sampling_rate)
        prompt_length = inputs["input_ids"].shape[1]
        generated = self.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            suppress_tokens=multimodal_token_ids(self.config),
            **generate_kwargs,
        )
        read = [self.mask_answer_ids(row, tokenizer) for row in generated[:, prompt_length:].tolist()]
        answers, emitted = [answer for answer, _ in read], [seg_emitted for _, seg_emitted in read]
        sequences, attention_mask = _left_padded_with_answers(
            inputs["input_ids"], inputs["attention_mask"], answers, tokenizer.pad_token_id
        )
        forward_inputs = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        # The backbone gives the final-layer states without computing the full-vocabulary logits.
        hidden = self.get_backbone()(input_ids=sequences, attention_mask=attention_mask, **forward_inputs)
        seg, _ = self.seg_embeddings(hidden.last_hidden_state, sequences, attention_mask)
        sam_frames = [preprocess_frames(frames, self.config.sam_image_size) for frames, _, _ in clips]
        masks = self.predict_masks(
            seg,
            pixel_values=torch.stack([f.pixel_values for f in sam_frames]).to(seg.device),
            input_sizes=[f.input_size for f in sam_frames],
            original_sizes=[f.original_size for f in sam_frames],
        )
        return [
            SegmentationOutput(
                text=tokenizer.decode(answer, skip_special_tokens=True),
                mask_logits=mask,
                seg_emitted=seg_emitted,
                sequences=row[row_mask.bool()][None],
            )
            for answer, mask, seg_emitted, row, row_mask in zip(answers, masks, emitted, sequences, attention_mask)
        ]

    def mask_answer_ids(self, answer_ids: Sequence[int], tokenizer) -> tuple[list[int], bool]:
        """The answer tokens the masks of a generated answer are decoded from, and whether the model emitted `[SEG]`.

        End-of-turn and padding tokens are dropped (the answer must end with the text its masks come from), and an
        answer without `[SEG]` gets `It is [SEG].` appended, as AURORA's inference does. Inference
        ([`segment_batch`]) and the GRPO rollouts' IoU reward both read answers through this, so a rollout is
        scored on the mask that inference would give it.
        """
        stop = {tokenizer.pad_token_id, tokenizer.eos_token_id, *_as_list(self.generation_config.eos_token_id)}
        keep = [i for i in answer_ids if i not in stop]
        if self.seg_token_id in keep:
            return keep, True
        text = tokenizer.decode(keep, skip_special_tokens=True)
        suffix = (" " if text and not text.endswith(" ") else "") + ANSWER_SUFFIX
        return keep + tokenizer(suffix, add_special_tokens=False)["input_ids"], False

    def prepare_inputs(self, processor, frames, audio, expression: str, sampling_rate: int = 16000) -> dict:
        """Processor inputs of one clip's prompt (the package's single prompt template, `text.build_prompt`)."""
        return self.prepare_batch_inputs(processor, [(frames, audio, expression)], sampling_rate)

    def prepare_batch_inputs(self, processor, clips: Sequence[tuple], sampling_rate: int = 16000) -> dict:
        """Processor inputs of several clips' prompts, left-padded for generation."""
        texts, kwargs = [], {}
        for frames, audio, expression in clips:
            messages = build_prompt(expression, num_frames=len(frames), with_audio=audio is not None)
            kwargs.setdefault("images", []).extend(frames)
            if audio is not None:
                kwargs.setdefault("audio", []).append(audio)
                kwargs["sampling_rate"] = sampling_rate
            texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        side = processor.tokenizer.padding_side
        processor.tokenizer.padding_side = "left"  # generation appends on the right
        try:
            inputs = processor(text=texts, return_tensors="pt", padding=True, **kwargs)
        finally:
            processor.tokenizer.padding_side = side
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}

    # ----- building from a base checkpoint -----
    @classmethod
    def from_base(
        cls,
        base_model_name_or_path: str,
        processor=None,
        sam_checkpoint: str | None = None,
        config_overrides: dict | None = None,
        **kwargs,
    ):
        """Build an AURORA model from a base checkpoint of the backbone (e.g. `Qwen/Qwen2.5-Omni-7B` or a saved thinker).

        Adds `[SEG]` to the processor's tokenizer, loads the backbone weights (and checks that none is missing:
        transformers only logs missing keys), initialises the projector and SAM, and optionally loads an official
        SAM checkpoint (interpolated to `config.sam_image_size`).

        Args:
            base_model_name_or_path (`str`): Base checkpoint (folder or Hub id).
            processor (*optional*): Its processor; loaded from the same path when omitted.
            sam_checkpoint (`str`, *optional*): Official `sam_vit_{b,l,h}_*.pth`; the `sam_*` dimensions must match it.
            config_overrides (`dict`, *optional*): [`AuroraConfig`] fields, e.g. `{"sam_image_size": 1024}`.
            **kwargs: Passed to `from_pretrained` (`dtype`, `device_map`, ...).

        Returns:
            `tuple`: `(model, processor)`.
        """
        processor = processor if processor is not None else load_processor(base_model_name_or_path)
        seg_token_id = add_seg_token(processor.tokenizer)
        config = cls.config_class.from_base(
            base_model_name_or_path,
            seg_token_id=seg_token_id,
            base_model_name_or_path=str(base_model_name_or_path),
            **(config_overrides or {}),
        )
        # transformers' own loading: the end of turn comes from `processor` below, not from a second tokenizer load
        loader = super().from_pretrained
        model, info = loader(base_model_name_or_path, config=config, output_loading_info=True, **kwargs)
        missing = [k for k in info["missing_keys"] if not k.startswith(cls._aurora_new_module_prefixes)]
        if missing:
            raise RuntimeError(
                f"{len(missing)} backbone weights were not loaded from {base_model_name_or_path} (e.g. {missing[:3]}): "
                "the checkpoint layout does not match the backbone's conversion mapping"
            )
        if len(processor.tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(processor.tokenizer), pad_to_multiple_of=64)
        if sam_checkpoint is not None:
            from .sam import load_sam_checkpoint

            load_sam_checkpoint(model.sam, sam_checkpoint)
        stop_at_end_of_turn(model.generation_config, processor.tokenizer)
        model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
        return model, processor

    # ----- Hub -----
    def push_to_hub(self, repo_id: str, *args, **kwargs):
        """Upload the model with a model card; see [`~aurora_trl.modeling.hub.push_to_hub`] for the arguments."""
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, *args, **kwargs)


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _left_padded_with_answers(
    input_ids: torch.LongTensor, attention_mask: torch.Tensor, answers: list[list[int]], pad_id: int
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Each row's attended prompt tokens followed by its answer, left-padded again into one batch (so the last
    position of every row is its answer's last token, as in training)."""
    rows = [
        torch.cat([ids[mask.bool()], torch.tensor(answer, dtype=ids.dtype, device=ids.device)])
        for ids, mask, answer in zip(input_ids, attention_mask, answers)
    ]
    length = max(len(r) for r in rows)
    sequences = input_ids.new_full((len(rows), length), pad_id)
    mask = torch.zeros_like(sequences)
    for b, row in enumerate(rows):
        sequences[b, length - len(row) :] = row
        mask[b, length - len(row) :] = 1
    return sequences, mask


class AuroraForSegmentation(AuroraSegmentationMixin, Qwen2_5OmniThinkerForConditionalGeneration):
    """AURORA on the Qwen2.5-Omni thinker: frames as images, audio, text → reasoning, `[SEG]`, masks.

    The forward is the thinker's (TRL's trainers call it unchanged); masks come from [`seg_embeddings`] and
    [`predict_masks`], or end to end from [`segment`].

    Example:

    ```python
    >>> from aurora_trl.modeling import AuroraForSegmentation

    >>> model, processor = AuroraForSegmentation.from_base("Qwen/Qwen2.5-Omni-7B", sam_checkpoint="sam_vit_h_4b8939.pth")
    >>> out = model.segment(frames, audio, "the dog that barks first", processor=processor)
    >>> out.text, out.mask_logits.shape  # (10, H, W)
    ```
    """

    config_class = AuroraConfig
    # A base checkpoint has no projector/SAM weights: initialised by `_init_weights`, not worth a load-report table.
    _keys_to_ignore_on_load_missing = [r"^seg_projector\.", r"^sam\."]

    def __init__(self, config: AuroraConfig):
        super().__init__(config)
        # transformers picks the loss from the class name: "...ForSegmentation" would select the DETR-style
        # segmentation loss for `forward(labels=...)`. The forward is the thinker's language-model forward.
        self.loss_type = "ForCausalLM"
        self._build_aurora_modules(config)
        self.post_init()


# Without this, transformers treats the class as custom code and skips the thinker's key conversion: a base
# checkpoint's LLM weights (saved as `model.layers.*`) would not match `model.language_model.layers.*` and stay random.
register_checkpoint_conversion_mapping(
    AuroraForSegmentation.__name__,
    get_checkpoint_conversion_mapping(AuroraForSegmentation._aurora_base_class_name),
    overwrite=True,
)


def lora_target_regex(model) -> str:
    """The LoRA target regex of `model`'s backbone (LLM q/v projections only)."""
    return type(unwrap_aurora_model(model))._aurora_lora_target_regex


def unwrap_aurora_model(model):
    """The AURORA model inside accelerate/DDP/DeepSpeed (`.module`) and PEFT (`get_base_model`) wrappers."""
    model = getattr(model, "module", model)
    while hasattr(model, "get_base_model") and not isinstance(model, AuroraSegmentationMixin):
        model = model.get_base_model()
    return model


__all__ = [
    "AuroraForSegmentation",
    "AuroraSegmentationMixin",
    "SegmentationOutput",
    "lora_target_regex",
    "unwrap_aurora_model",
]
