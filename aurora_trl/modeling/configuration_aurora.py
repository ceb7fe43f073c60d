"""Configuration of [`AuroraForSegmentation`]: the backbone's own configuration plus the segmentation fields.

The segmentation fields live in one dataclass, [`AuroraSegmentationFields`], mixed into the backbone's config
class. [`AuroraConfig`] is that mix for the Qwen2.5-Omni thinker, so a saved AURORA `config.json` is a valid
thinker config with extra keys, and a base thinker `config.json` loads into [`AuroraConfig`] with the defaults
below. Another transformers audio-visual backbone gets its config with one more two-base class (see
`modeling_aurora.py`).
"""

import dataclasses

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, Qwen2_5OmniThinkerConfig

from .sam import SamSpec


def _sam_fields() -> list[tuple]:
    """One `sam_{name}` config field per [`SamSpec`] field, with the spec's default: the spec is the one place
    that declares SAM's dimensions. `config.json` keeps them flat (`"sam_image_size": 224`), where JSON turns the
    tuple of global-attention blocks into a list."""
    out = []
    for spec_field in dataclasses.fields(SamSpec):
        kind = list[int] | tuple[int, ...] if spec_field.name == "global_attn_indexes" else spec_field.type
        out.append((f"sam_{spec_field.name}", kind, dataclasses.field(default=spec_field.default)))
    return out


def _sam_spec(self) -> SamSpec:
    """The SAM dimensions as a [`SamSpec`]."""
    values = {name: getattr(self, f"sam_{name}") for name in SamSpec.__dataclass_fields__}
    return SamSpec(**{**values, "global_attn_indexes": tuple(values["global_attn_indexes"])})


def _set_sam_spec(self, spec: SamSpec) -> None:
    """Copy the dimensions of `spec` (e.g. `SamSpec.from_variant("vit_b", 1024)`) into the fields."""
    for name in SamSpec.__dataclass_fields__:
        value = getattr(spec, name)
        setattr(self, f"sam_{name}", list(value) if isinstance(value, tuple) else value)


AuroraSegmentationFields = dataclasses.make_dataclass(
    "AuroraSegmentationFields",
    [("seg_token_id", int | None, None), *_sam_fields(), ("base_model_name_or_path", str | None, None)],
    namespace={
        "__module__": __name__,
        "__doc__": r"""
    seg_token_id (`int`, *optional*):
        Id of the `[SEG]` token (a normal added token). Set by [`add_seg_token`] / `from_base`.
    sam_image_size, sam_embed_dim, ... (one `sam_{name}` per field of [`~aurora_trl.modeling.sam.SamSpec`]):
        SAM's dimensions, with the spec's defaults (ViT-H at AURORA's 224² input); `sam_spec` reads them as a
        `SamSpec` and `set_sam_spec` writes them from one.
    base_model_name_or_path (`str`, *optional*):
        The base checkpoint the model was built from (written into model cards).
    """,
        "sam_spec": property(_sam_spec),
        "set_sam_spec": _set_sam_spec,
    },
)


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
