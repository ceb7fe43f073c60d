"""The AURORA model layer: the Omni processor, the config, the segmentation model, SAM, the embedding cache.

It imports the package's ground floor (`aurora_trl.text`, `aurora_trl.data_row`), transformers, segment-anything
and peft, never the trainers, the scripts or the applications.
Names are imported lazily (on first access), so `from aurora_trl.modeling.processing import load_processor` does not
pay for peft or segment-anything.
"""

import importlib


_EXPORTS = {
    "AuroraConfig": "configuration_aurora",
    "AuroraSegmentationFields": "configuration_aurora",
    "AuroraForSegmentation": "modeling_aurora",
    "AuroraSegmentationMixin": "modeling_aurora",
    "SegmentationOutput": "inference",
    "add_seg_token": "tokens",
    "multimodal_token_ids": "tokens",
    "select_seg_hidden_states": "tokens",
    "stop_at_end_of_turn": "tokens",
    "SamEmbeddingCache": "embedding_cache",
    "TrainingPolicy": "policy",
    "apply_training_policy": "policy",
    "freeze_unused_parameters": "policy",
    "lora_config": "policy",
    "OmniProcessorNoVideo": "processing",
    "load_processor": "processing",
    "SamFrames": "sam",
    "SamSpec": "sam",
    "load_sam_checkpoint": "sam",
    "preprocess_frames": "sam",
    "model_card": "hub",
    "push_to_hub": "hub",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
