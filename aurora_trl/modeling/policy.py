"""What trains: AURORA's parameter policy, every part configurable.

AURORA: audio and vision towers frozen, SAM's image encoder frozen, LoRA (r 8, alpha 16, dropout 0.05) on the LLM's
`q_proj`/`v_proj`, and the mask decoder and the `[SEG]` projector fully trainable. AURORA's own target matching
also put LoRA on the audio encoder and SAM's decoder attention (its exclusions are commented out); here the targets
are a regex that matches the LLM attention only.

**Only the `[SEG]` rows of the embeddings and the LM head train** (PEFT's `trainable_token_indices`). AURORA and
LISA train full copies of both matrices for the one new token: on Qwen2.5-Omni-3B that is 2 × 311 M parameters
(with their gradients and AdamW state) for 2 × 2,048 values that change. Under LoRA, every other row stays the
base's; the merged model carries the trained rows.

**Precision.** Whatever trains keeps float32 weights, so that AdamW keeps float32 state and updates below bf16's
resolution are not lost: [`keep_trainable_in_float32`] (also after TRL's set-up, which casts a quantised model's
trainable parameters to bf16). The model class keeps its trained modules in float32 when loaded in bf16; PEFT casts
at use (LoRA casts its input, the token rows are copied into the frozen matrix in its dtype).

Apply it with `model = apply_training_policy(model, policy)` and hand the result to a trainer (the stage scripts do).
Passing `peft_config=lora_config(model, policy)` to a TRL trainer instead would let TRL call `get_peft_model` itself,
without [`wrap_with_lora`]'s fix for TRL's fused LM head, the unused-parameter freeze DDP needs, or the float32 cast.

Under DeepSpeed ZeRO-3 the rows train another way (`token_rows="seg-masked"`, see [`TrainingPolicy`]), and nothing
is cast to float32 (DeepSpeed keeps the float32 master weights).
"""

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from peft import LoraConfig, get_peft_model


# Parameters that never receive a gradient in LISA-style decoding (no points, boxes or mask prompts, single-mask
# output, no IoU head) or in the thinker (the audio tower's unused bos/eos embedding). DDP needs them frozen.
UNUSED_PARAMETERS = (
    "audio_tower.audio_bos_eos_token",
    "prompt_encoder.point_embeddings",
    "prompt_encoder.not_a_point_embed",
    "prompt_encoder.mask_downscaling",
    "mask_decoder.iou_prediction_head",
    "mask_decoder.output_hypernetworks_mlps.1.",
    "mask_decoder.output_hypernetworks_mlps.2.",
    "mask_decoder.output_hypernetworks_mlps.3.",
)
# How the rows of the embeddings and the LM head train (`TrainingPolicy.token_rows`).
TOKEN_ROWS = ("seg", "seg-masked", "all")


@contextmanager
def trainable(parameters):
    """Make `parameters` trainable inside the block and give each its own `requires_grad` back after it: the tiny
    model's pretrainings train parts that a stage's policy may keep frozen, and must leave the policy as it was."""
    previous = {p: p.requires_grad for p in parameters}
    for p in previous:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, was_trainable in previous.items():
            p.requires_grad_(was_trainable)


@dataclass
class TrainingPolicy:
    """Which parameters of [`AuroraForSegmentation`] train. Defaults: AURORA's policy.

    Args:
        use_lora (`bool`, *optional*, defaults to `True`):
            LoRA on the LLM; `False` trains the LLM fully when `train_llm` is set, else keeps it frozen.
        lora_r (`int`, *optional*, defaults to `8`): LoRA rank.
        lora_alpha (`int`, *optional*, defaults to `16`): LoRA scaling numerator.
        lora_dropout (`float`, *optional*, defaults to `0.05`): LoRA dropout.
        lora_target_modules (`str`, *optional*):
            Regex of the LoRA targets; defaults to the backbone's LLM `q_proj`/`v_proj` regex.
        train_llm (`bool`, *optional*, defaults to `False`): Without LoRA, train all LLM weights.
        train_audio_tower / train_vision_tower / train_sam_image_encoder (`bool`, defaults to `False`): Frozen in AURORA.
        train_mask_decoder / train_projector (`bool`, defaults to `True`): Trained in full.
        train_embeddings / train_lm_head (`bool`, defaults to `True`):
            Train the input embeddings / the LM head: with LoRA, the rows `token_rows` names; without, the whole
            matrix.
        token_rows (`str`, *optional*, defaults to `"seg"`):
            Which rows of the embeddings and the LM head train (with LoRA; each only if `train_embeddings` /
            `train_lm_head`):

            - `"seg"`: the `[SEG]` row only, as PEFT's token rows.
            - `"seg-masked"`: the `[SEG]` row only, as full trainable copies of the two matrices whose gradients are
              masked to that row. DeepSpeed ZeRO-3 needs this: PEFT builds its token rows with a CUDA-only gather of
              the sharded matrix, and TRL's fused LM head gathers the head's weight only when it is a sharded
              parameter, which PEFT's merged matrix is not. The other rows keep their values (their gradient is
              zero; keep `weight_decay` 0, AURORA's value), at the memory of full copies, which ZeRO-3 shards.
            - `"all"`: full trainable copies, every row trains (AURORA's choice). Only for a model whose head has
              everything to learn, such as the tiny random one of the tests and tiny recipes.
        freeze_unused (`bool`, *optional*, defaults to `True`): Freeze [`UNUSED_PARAMETERS`] (needed under DDP).
        trainable_in_float32 (`bool`, *optional*, defaults to `True`):
            Cast what trains to float32 ([`keep_trainable_in_float32`]). Off under DeepSpeed, whose engine keeps
            float32 master weights itself and needs a single dtype across its sharded parameters.
        extra_modules_to_save (`list[str]`): More module-name suffixes trained in full next to LoRA.
    """

    use_lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str | None = None
    train_llm: bool = False
    train_audio_tower: bool = False
    train_vision_tower: bool = False
    train_sam_image_encoder: bool = False
    train_mask_decoder: bool = True
    train_projector: bool = True
    train_embeddings: bool = True
    train_lm_head: bool = True
    token_rows: str = "seg"
    freeze_unused: bool = True
    trainable_in_float32: bool = True
    extra_modules_to_save: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.token_rows not in TOKEN_ROWS:
            raise ValueError(f"token_rows must be one of {', '.join(TOKEN_ROWS)}, got {self.token_rows!r}")

    def modules_to_save(self) -> list[str]:
        """Module-name suffixes trained fully next to LoRA (PEFT keeps a trainable copy of each)."""
        names = []
        if self.train_projector:
            names.append("seg_projector")
        if self.train_mask_decoder:
            names.append("mask_decoder")
        if self.token_rows in ("seg-masked", "all"):
            names += [
                name for name, on in (("embed_tokens", self.train_embeddings), ("lm_head", self.train_lm_head)) if on
            ]
        return names + list(self.extra_modules_to_save)

    def trainable_token_indices(self, seg_token_id: int, tied_embeddings: bool) -> dict[str, list[int]]:
        """PEFT's `trainable_token_indices`: the `[SEG]` row of the embeddings and of the LM head.

        With tied embeddings the head shares the embedding matrix, and PEFT ties its row to the embedding's.
        """
        rows = {}
        if self.token_rows != "seg":
            return rows
        if self.train_embeddings or (tied_embeddings and self.train_lm_head):
            rows["embed_tokens"] = [seg_token_id]
        if self.train_lm_head and not tied_embeddings:
            rows["lm_head"] = [seg_token_id]
        return rows


def lora_config(model, policy: TrainingPolicy | None = None) -> LoraConfig:
    """The PEFT [`~peft.LoraConfig`] of `policy` for `model` (applied by [`apply_training_policy`])."""
    policy = policy or TrainingPolicy()
    from .modeling_aurora import lora_target_regex

    config = model.config
    tied = bool(getattr(config, "tie_word_embeddings", False))  # the flag transformers ties the head by
    return LoraConfig(
        r=policy.lora_r,
        lora_alpha=policy.lora_alpha,
        lora_dropout=policy.lora_dropout,
        target_modules=policy.lora_target_modules or lora_target_regex(model),
        modules_to_save=policy.modules_to_save(),
        trainable_token_indices=policy.trainable_token_indices(config.seg_token_id, tied) or None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def keep_trainable_in_float32(model) -> int:
    """Cast every trainable bf16/fp16 parameter of `model` to float32 (in place); returns how many were cast."""
    count = 0
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype in (torch.bfloat16, torch.float16):
            parameter.data = parameter.data.float()
            count += 1
    return count


def mask_row_gradients(model, seg_token_id: int) -> int:
    """Keep only the `[SEG]` row of the gradient of the trainable embedding and LM-head copies
    (`token_rows="seg-masked"`); returns how many matrices were hooked."""

    def keep_seg_row(grad):
        kept = torch.zeros_like(grad)
        kept[seg_token_id] = grad[seg_token_id]
        return kept

    hooked = 0
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and name.endswith(
            ("embed_tokens.modules_to_save.default.weight", "lm_head.modules_to_save.default.weight")
        ):
            parameter.register_hook(keep_seg_row)
            hooked += 1
    return hooked


def cast_copies_at_use(model) -> None:
    """Let float32 trainable copies of the embeddings and the LM head (`token_rows="all"`) sit next to a bf16 or fp16
    backbone: the embeddings' output is cast to the backbone's dtype and the head's input to the head's, as LoRA and
    PEFT's token rows cast at their use. Without it, generation (which runs outside autocast) mixes dtypes."""
    from peft.utils.other import ModulesToSaveWrapper

    for name, module in model.named_modules():
        if not isinstance(module, ModulesToSaveWrapper):
            continue
        if name.endswith("embed_tokens"):
            backbone = module.original_module.weight.dtype
            module.register_forward_hook(lambda _module, _args, output, dtype=backbone: output.to(dtype))
        elif name.endswith("lm_head"):
            module.register_forward_pre_hook(lambda head, args: (args[0].to(head.weight.dtype), *args[1:]))


def wrap_with_lora(model, config: LoraConfig, adapters_in_float32: bool = True):
    """`peft.get_peft_model(model, config)`, with the LM head made readable by TRL's fused LM head.

    TRL's fused head reads `lm_head.weight` and `lm_head.bias`; PEFT's token-row wrapper forwards only `weight` (the
    matrix with the trained rows copied in). A bias-free head gets `bias = None`, as its plain `Linear` has.
    `adapters_in_float32=False` creates the LoRA weights in the model's dtype (what DeepSpeed needs).
    """
    model = get_peft_model(model, config, autocast_adapter_dtype=adapters_in_float32)
    head = model.get_output_embeddings()
    if head is not None and not hasattr(head, "bias") and head.token_adapter.get_base_layer().bias is None:
        head.bias = None
    return model


def _plain_name(name: str) -> str:
    # PEFT prefixes (`base_model.model.`) and trainable copies (`.modules_to_save.default.`, `.original_module.`)
    for prefix in ("base_model.model.",):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name.replace(".modules_to_save.default.", ".").replace(".original_module.", ".")


def freeze_unused_parameters(model) -> int:
    """Freeze [`UNUSED_PARAMETERS`] (also inside PEFT's `modules_to_save` copies); returns how many were frozen."""
    count = 0
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and any(u in _plain_name(name) for u in UNUSED_PARAMETERS):
            parameter.requires_grad_(False)
            count += 1
    return count


def apply_training_policy(model, policy: TrainingPolicy | None = None):
    """Set what trains in `model` according to `policy`; returns the (possibly PEFT-wrapped) model.

    With `use_lora` the result is a [`~peft.PeftModel`]; otherwise `requires_grad` is set in place.
    """
    policy = policy or TrainingPolicy()
    from .modeling_aurora import unwrap_aurora_model

    base = unwrap_aurora_model(model)
    if policy.use_lora:
        model = wrap_with_lora(model, lora_config(base, policy), adapters_in_float32=policy.trainable_in_float32)
        if policy.token_rows == "seg-masked":
            mask_row_gradients(model, base.config.seg_token_id)
    trainable_prefixes = {
        base._aurora_audio_tower: policy.train_audio_tower,
        base._aurora_vision_tower: policy.train_vision_tower,
        "sam.image_encoder": policy.train_sam_image_encoder,
        "sam.prompt_encoder": False,  # LISA-style decoding uses only its fixed no-mask embedding and position grid
    }
    for name, parameter in model.named_parameters():
        plain = _plain_name(name)
        if "lora_" in name:
            continue
        for prefix, trainable in trainable_prefixes.items():
            if plain.startswith(prefix + "."):
                parameter.requires_grad_(trainable)
                break
        else:
            if not policy.use_lora:
                parameter.requires_grad_(_trains_without_lora(plain, policy))
    if policy.freeze_unused:
        freeze_unused_parameters(model)
    if policy.trainable_in_float32:
        keep_trainable_in_float32(model)
        if policy.use_lora and policy.token_rows == "all":
            cast_copies_at_use(model)
    return model


def _trains_without_lora(name: str, policy: TrainingPolicy) -> bool:
    if name.startswith("seg_projector."):
        return policy.train_projector
    if name.startswith("sam.mask_decoder."):
        return policy.train_mask_decoder
    if name.startswith("lm_head."):
        return policy.train_lm_head
    if ".embed_tokens." in name:
        return policy.train_embeddings
    return policy.train_llm
