"""The merged model a stage hands on: PEFT's own merge where PEFT can merge, the dequantised base plus the LoRA update
where it cannot (4-bit), in the dtype asked for."""

import copy

import pytest
import torch
from transformers import BitsAndBytesConfig

from aurora_trl.modeling import AuroraForSegmentation
from aurora_trl.modeling.export import build_merged_model, merged_dtype, merged_state_dict
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy


def trained_policy_model(path, **load):
    """The tiny model under AURORA's policy, with every trainable tensor moved off its initial value."""
    model = apply_training_policy(AuroraForSegmentation.from_pretrained(path, **load), TrainingPolicy())
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def test_merged_state_dict_equals_peft_merge(tiny_aurora_dir):
    model = trained_policy_model(tiny_aurora_dir)
    ours = merged_state_dict(model)
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    assert ours.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(ours[name], tensor), name


def test_4bit_merge_is_the_dequantised_base_plus_the_lora_update(tiny_aurora_dir):
    from bitsandbytes.functional import dequantize_4bit

    from aurora_trl.modeling.modeling_aurora import AuroraForSegmentation as Model

    quantization = BitsAndBytesConfig(load_in_4bit=True, llm_int8_skip_modules=Model.unquantized_modules())
    model = trained_policy_model(tiny_aurora_dir, quantization_config=quantization, device_map={"": "cpu"})
    layer = model.get_base_model().model.language_model.layers[0].self_attn.q_proj
    weight = layer.base_layer.weight
    expected = dequantize_4bit(weight.data, weight.quant_state).float() + layer.get_delta_weight("default").float()
    merged = merged_state_dict(model)
    torch.testing.assert_close(merged["model.language_model.layers.0.self_attn.q_proj.weight"], expected)
    assert all(t.dtype != torch.uint8 for t in merged.values())
    fresh = build_merged_model(model, merged, torch.bfloat16)
    assert not getattr(fresh, "is_loaded_in_4bit", False) and not hasattr(fresh.config, "quantization_config")
    assert fresh.model.language_model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert fresh.seg_projector[0].weight.dtype == torch.float32  # kept in float32, as loading in bf16 keeps it


@pytest.mark.parametrize(
    ("loaded", "requested", "expected"),
    [
        (torch.float32, "auto", torch.float32),
        (torch.bfloat16, "auto", torch.bfloat16),
        (torch.bfloat16, "float32", torch.float32),
        (torch.float32, "float16", torch.float16),
    ],
)
def test_merged_dtype_is_the_loaded_one_unless_asked(tiny_aurora_dir, loaded, requested, expected):
    model = AuroraForSegmentation.from_pretrained(tiny_aurora_dir, dtype=loaded)
    assert merged_dtype(model, requested) == expected
