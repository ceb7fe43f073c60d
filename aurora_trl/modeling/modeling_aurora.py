"""AURORA's segmentation model on a transformers audio-visual LLM: backbone + `[SEG]` + projector + SAM.

Design
------
**Subclass, not wrapper.** [`AuroraForSegmentation`] *is* a `Qwen2_5OmniThinkerForConditionalGeneration` with two
extra sub-modules (`seg_projector`, `sam`). Compared with a wrapper holding the thinker, the subclass keeps
everything TRL relies on without delegation code: `generate` with the thinker's 3-D (TMRoPE) position logic,
`base_model` = the modality-merging backbone that TRL's fused LM head calls, the output embeddings, and the Hub
checkpoint layout (a saved AURORA model's LLM/tower keys are those of a plain thinker). Its one trap, transformers 5
skipping checkpoint-key conversion for classes outside the library, is handled in `loading.py`.

**One job a module.** This module holds the model: the backbone seam, `[SEG]` states, the projector and SAM's
mask decoding. `inference.py` holds the pipeline from a clip to its answer and masks (`segment`), `loading.py`
the loading from a checkpoint or a base (`from_pretrained`, `from_base`), `hub.py` the model card and upload.

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

from collections.abc import Sequence

import torch
from torch import nn
from transformers import Qwen2_5OmniThinkerForConditionalGeneration

from .configuration_aurora import AuroraConfig
from .inference import AuroraInferenceMixin
from .loading import AuroraLoadingMixin, register_base_conversion
from .sam import build_sam, decode_masks, init_sam_module, postprocess_masks
from .tokens import select_seg_hidden_states


class AuroraSegmentationMixin(AuroraInferenceMixin, AuroraLoadingMixin):
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

    # ----- Hub -----
    def push_to_hub(self, repo_id: str, *args, **kwargs):
        """Upload the model with a model card; see [`~aurora_trl.modeling.hub.push_to_hub`] for the arguments."""
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, *args, **kwargs)


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


register_base_conversion(AuroraForSegmentation)


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
    "lora_target_regex",
    "unwrap_aurora_model",
]
