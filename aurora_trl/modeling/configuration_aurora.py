"""Configuration of [`AuroraForSegmentation`]: the backbone's own configuration plus the segmentation fields.

The segmentation fields live in one dataclass, [`AuroraSegmentationFields`], mixed into the backbone's config
class. [`AuroraConfig`] is that mix for the Qwen2.5-Omni thinker, so a saved AURORA `config.json` is a valid
thinker config with extra keys, and a base thinker `config.json` loads into [`AuroraConfig`] with the defaults
below. Another transformers audio-visual backbone gets its config with one more two-base class (see
`modeling_aurora.py`).
"""

from dataclasses import dataclass

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, Qwen2_5OmniThinkerConfig

from .sam import SamSpec


@dataclass
class AuroraSegmentationFields:
    r"""
    seg_token_id (`int`, *optional*):
        Id of the `[SEG]` token (a normal added token). Set by [`add_seg_token`] / `from_base`.
    sam_image_size (`int`, *optional*, defaults to `224`):
        SAM input size in pixels. AURORA uses 224 (14×14 image embedding), LISA and SAM's pretraining 1024.
    sam_embed_dim (`int`, *optional*, defaults to `1280`):
        Width of SAM's ViT image encoder (ViT-H: 1280, ViT-L: 1024, ViT-B: 768).
    sam_depth (`int`, *optional*, defaults to `32`):
        Number of ViT blocks (ViT-H: 32, ViT-L: 24, ViT-B: 12).
    sam_num_heads (`int`, *optional*, defaults to `16`):
        ViT attention heads (ViT-H/L: 16, ViT-B: 12).
    sam_global_attn_indexes (`list[int]`, *optional*, defaults to `(7, 15, 23, 31)`):
        ViT blocks with global attention; the others use windowed attention.
    sam_patch_size (`int`, *optional*, defaults to `16`):
        ViT patch size.
    sam_window_size (`int`, *optional*, defaults to `14`):
        Window of the windowed-attention blocks.
    sam_prompt_dim (`int`, *optional*, defaults to `256`):
        SAM's prompt/embedding width; the `[SEG]` projector maps the LLM hidden size to it.
    sam_decoder_depth (`int`, *optional*, defaults to `2`):
        Blocks of the mask decoder's two-way transformer.
    sam_decoder_heads (`int`, *optional*, defaults to `8`):
        Attention heads of the mask decoder.
    sam_decoder_mlp_dim (`int`, *optional*, defaults to `2048`):
        MLP width of the mask decoder.
    base_model_name_or_path (`str`, *optional*):
        The base checkpoint the model was built from (written into model cards).
    """

    seg_token_id: int | None = None
    sam_image_size: int = 224
    sam_embed_dim: int = 1280
    sam_depth: int = 32
    sam_num_heads: int = 16
    sam_global_attn_indexes: list[int] | tuple[int, ...] = (7, 15, 23, 31)
    sam_patch_size: int = 16
    sam_window_size: int = 14
    sam_prompt_dim: int = 256
    sam_decoder_depth: int = 2
    sam_decoder_heads: int = 8
    sam_decoder_mlp_dim: int = 2048
    base_model_name_or_path: str | None = None

    @property
    def sam_spec(self) -> SamSpec:
        """The SAM dimensions as a [`SamSpec`]."""
        return SamSpec(
            image_size=self.sam_image_size,
            embed_dim=self.sam_embed_dim,
            depth=self.sam_depth,
            num_heads=self.sam_num_heads,
            global_attn_indexes=tuple(self.sam_global_attn_indexes),
            patch_size=self.sam_patch_size,
            window_size=self.sam_window_size,
            prompt_dim=self.sam_prompt_dim,
            decoder_depth=self.sam_decoder_depth,
            decoder_heads=self.sam_decoder_heads,
            decoder_mlp_dim=self.sam_decoder_mlp_dim,
        )

    def set_sam_spec(self, spec: SamSpec) -> None:
        """Copy the dimensions of `spec` (e.g. `SamSpec.from_variant("vit_b", 1024)`) into the fields."""
        for name in SamSpec.__dataclass_fields__:
            value = getattr(spec, name)
            setattr(self, "sam_" + name, list(value) if isinstance(value, tuple) else value)


@strict
class AuroraConfig(Qwen2_5OmniThinkerConfig, AuroraSegmentationFields):
    r"""
    Configuration of [`AuroraForSegmentation`] on the Qwen2.5-Omni thinker: every field of
    [`~transformers.Qwen2_5OmniThinkerConfig`] plus those of [`AuroraSegmentationFields`] (`seg_token_id` and
    the `sam_*` dimensions).

    Example:

    ```python
    >>> from aurora_trl.modeling import AuroraConfig
    >>> from aurora_trl.modeling.sam import SamSpec

    >>> config = AuroraConfig.from_base("Qwen/Qwen2.5-Omni-7B")  # the base's thinker config, AURORA defaults
    >>> config.set_sam_spec(SamSpec.from_variant("vit_h", image_size=1024))  # LISA's SAM size instead of 224
    ```
    """

    model_type = "aurora_qwen2_5_omni"

    @classmethod
    def from_base(cls, path: str, **fields) -> "AuroraConfig":
        """The configuration of an AURORA model on a base checkpoint: the base's backbone config plus `fields`.

        Accepts a thinker folder (`config.json` of `Qwen2_5OmniThinkerConfig`) and a full Qwen2.5-Omni checkpoint
        (`Qwen/Qwen2.5-Omni-7B`: the thinker config is nested under `thinker_config`, next to the talker's).
        """
        config_dict, _ = cls.get_config_dict(path)
        config_dict = config_dict.get("thinker_config", config_dict)
        dropped = ("model_type", "architectures", "auto_map", "transformers_version")
        return cls.from_dict({**{k: v for k, v in config_dict.items() if k not in dropped}, **fields})


# Lets `AutoConfig` (used by processors and pipelines when they read `config.json`) resolve the model type.
AutoConfig.register(AuroraConfig.model_type, AuroraConfig, exist_ok=True)
