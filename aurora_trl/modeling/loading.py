"""Loading an AURORA model: from one of its own checkpoints, or built on a base checkpoint of its backbone.

Two traps of transformers 5 are handled here. A model class outside the library gets no checkpoint-key conversion,
so a base checkpoint's LLM weights (saved as `model.layers.*`) would not match `model.language_model.layers.*` and
stay random: [`register_base_conversion`] registers the backbone's own mapping for the AURORA class, and
[`AuroraLoadingMixin.from_base`] checks that no backbone weight was left missing. And a Qwen2.5-Omni checkpoint saved
by transformers 5 names no end-of-turn token in its generation config, so generation would run to `max_new_tokens`:
[`AuroraLoadingMixin.from_pretrained`] takes it from the folder's tokenizer.
"""

import logging

from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping

from .processing import load_processor
from .tokens import add_seg_token, stop_at_end_of_turn


logger = logging.getLogger(__name__)


class AuroraLoadingMixin:
    """`from_pretrained` (with the end-of-turn fix) and `from_base`; mixed into [`AuroraSegmentationMixin`]."""

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


def register_base_conversion(model_class) -> None:
    """Give `model_class` the checkpoint-key conversion of its backbone class (`_aurora_base_class_name`): without it,
    transformers treats the class as custom code and skips the conversion."""
    register_checkpoint_conversion_mapping(
        model_class.__name__, get_checkpoint_conversion_mapping(model_class._aurora_base_class_name), overwrite=True
    )
