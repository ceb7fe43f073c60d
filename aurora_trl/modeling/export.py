"""The full model a run hands to the next stage: LoRA and the token rows merged, 4-bit weights dequantised, sharded
weights gathered, in the dtype asked for.

One path for every way a model trains. PEFT's own `merge_and_unload` works on an unsharded, unquantised model only:
on a 4-bit model it merges LoRA into the quantised weights (re-quantising them, so the merged model is 4-bit and most
of the LoRA update is rounded away), and under DeepSpeed ZeRO-3 or FSDP each process holds a shard. Here the state
dict is built module by module instead:

- a LoRA layer gives its base weight (dequantised when 4-bit) plus PEFT's `get_delta_weight` of each active adapter;
- a token-row layer gives its matrix with the trained rows copied in (PEFT's `get_merged_weights`);
- a `modules_to_save` wrapper gives its trained copy;
- any other module gives its own parameters and persistent buffers (dequantised when 4-bit).

Each module's weights are gathered (ZeRO-3: `GatheredParameters`; FSDP2: `DTensor.full_tensor`) while it is read,
so every process must call [`merged_state_dict`] together; only the main process keeps the tensors, on the CPU.
The result loads into a fresh model, which `save_pretrained` writes in the Hub layout.
"""

import copy
from contextlib import contextmanager

import torch
from torch import nn

from .modeling_aurora import unwrap_aurora_model


def _is_sharded(model) -> bool:
    """Whether some weight of `model` is split between processes (DeepSpeed ZeRO-3 or FSDP2)."""
    from torch.distributed.tensor import DTensor

    return any(hasattr(p, "ds_id") or isinstance(p, DTensor) for p in model.parameters())


@contextmanager
def _gathered(parameters):
    """The full values of `parameters` while inside, where DeepSpeed ZeRO-3 shards them."""
    sharded = [p for p in parameters if hasattr(p, "ds_id")]
    if not sharded:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(sharded, modifier_rank=None):
        yield


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module`'s own parameters and persistent buffers (not its children's) by local name, each whole: FSDP2
    shards (DTensors) are gathered, bitsandbytes 4-bit/8-bit weights dequantised."""
    from torch.distributed.tensor import DTensor
    from transformers.integrations.bitsandbytes import dequantize_bnb_weight

    non_persistent = getattr(module, "_non_persistent_buffers_set", set())
    tensors = dict(module.named_parameters(recurse=False))
    tensors.update(
        {name: b for name, b in module.named_buffers(recurse=False) if b is not None and name not in non_persistent}
    )
    for name, tensor in tensors.items():
        if isinstance(tensor, DTensor):
            tensors[name] = tensor.full_tensor()
        elif type(tensor).__name__ in ("Params4bit", "Int8Params"):
            tensors[name] = dequantize_bnb_weight(tensor, getattr(module, "state", None))
    return tensors


def _lora_weights(layer) -> dict[str, torch.Tensor]:
    """Base weight plus each active adapter's delta; the bias and any other tensor of the base layer as they are."""
    tensors = _own_tensors(layer.get_base_layer())
    if not layer.merged:
        weight = tensors["weight"].float()
        for adapter in layer.active_adapters:
            if adapter not in layer.lora_A:
                continue
            if layer.use_dora.get(adapter, False):
                raise NotImplementedError("merging DoRA adapters is not supported; merge with PEFT instead")
            weight = weight + layer.get_delta_weight(adapter).float()
        tensors["weight"] = weight
    return tensors


def _walk(module: nn.Module, prefix: str, out: dict | None) -> None:
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import ModulesToSaveWrapper, TrainableTokensWrapper

    if isinstance(module, ModulesToSaveWrapper):
        active = (
            module.modules_to_save[module.active_adapters[0]] if module.active_adapters else module.original_module
        )
        _walk(active, prefix, out)
        return
    if isinstance(module, (LoraLayer, TrainableTokensWrapper)):
        with _gathered(module.parameters()):
            if isinstance(module, LoraLayer):
                tensors = _lora_weights(module)
            else:
                adapter = module.token_adapter
                tensors = _own_tensors(adapter.get_base_layer())
                tensors["weight"] = adapter.get_merged_weights(adapter.active_adapters)
            if out is not None:
                out.update({prefix + name: t.detach().to("cpu", copy=True) for name, t in tensors.items()})
        return
    with _gathered(module.parameters(recurse=False)):
        own = _own_tensors(module)
        if out is not None:
            out.update({prefix + name: t.detach().to("cpu", copy=True) for name, t in own.items()})
    for name, child in module.named_children():
        _walk(child, f"{prefix}{name}.", out)


def merged_state_dict(model, keep: bool = True) -> dict[str, torch.Tensor] | None:
    """The state dict of the plain model inside `model` (PEFT, DDP, DeepSpeed or FSDP wrapped, 4-bit or not), with
    adapters merged and every tensor whole, on the CPU in its training dtype (4-bit weights dequantised).

    Every process must call this together when the weights are sharded; those with `keep=False` return None.
    """
    out = {} if keep else None
    with torch.no_grad():
        _walk(unwrap_aurora_model(model), "", out)
    return out


def merged_dtype(model, requested: str | None) -> torch.dtype:
    """The dtype a merged model is saved in: `requested` ("bfloat16", "float16", "float32"), or, for None/"auto",
    the dtype the model was loaded in (`config.dtype`: the recipe's `dtype`, else the checkpoint's); never a
    quantised one."""
    if requested not in (None, "auto"):
        return getattr(torch, requested)
    config = unwrap_aurora_model(model).config
    dtype = getattr(config, "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return dtype if dtype in (torch.float32, torch.bfloat16, torch.float16) else torch.bfloat16


def build_merged_model(model, state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> nn.Module:
    """A fresh, unquantised model of `model`'s class holding `state_dict`, for `save_pretrained`: backbone weights in
    `dtype`, the modules the class keeps in float32 (`_keep_in_fp32_modules_strict`) in float32 when `dtype` is a
    16-bit one. Built on the meta device, so its non-persistent buffers (never saved) stay there: reload the saved
    folder to run it."""
    plain = unwrap_aurora_model(model)
    config = copy.deepcopy(plain.config)
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    config.dtype = dtype
    keep_fp32 = tuple(f"{name}." for name in (type(plain)._keep_in_fp32_modules_strict or ()))
    # On the meta device: the tensors come from `state_dict`. `set_zero3_state` tells transformers that it is already
    # inside DeepSpeed's `zero.Init`, so that its sub-models (the towers) are not built sharded under ZeRO-3.
    from transformers.modeling_utils import set_zero3_state

    with torch.device("meta"), set_zero3_state():
        fresh = type(plain)(config)
    cast = {
        name: t.to(torch.float32 if (dtype != torch.float32 and name.startswith(keep_fp32)) else dtype)
        if t.is_floating_point()
        else t
        for name, t in state_dict.items()
    }
    result = fresh.load_state_dict(cast, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"merged state dict does not match {type(plain).__name__}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    fresh.generation_config = copy.deepcopy(plain.generation_config)
    if config.tie_word_embeddings:
        fresh.tie_weights()
    return fresh.eval()


def save_merged_model(model, out_dir, dtype: str | None = None, is_main_process: bool = True) -> nn.Module | None:
    """Write the merged model of `model` to `out_dir` with `save_pretrained` (see [`merged_state_dict`]); every
    process calls this, the main process writes and returns the saved model (see [`build_merged_model`])."""
    if not is_main_process and not _is_sharded(model):
        return None  # nothing to gather: the other processes need not read their copy
    state_dict = merged_state_dict(model, keep=is_main_process)
    if not is_main_process:
        return None
    merged = build_merged_model(model, state_dict, merged_dtype(model, dtype))
    merged.save_pretrained(out_dir)
    return merged


__all__ = ["build_merged_model", "merged_dtype", "merged_state_dict", "save_merged_model"]
