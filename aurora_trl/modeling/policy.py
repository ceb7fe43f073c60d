"""What trains: AURORA's parameter policy, every part configurable.

AURORA (reference: aurora-method.md §2): audio and vision towers frozen, SAM's image encoder frozen, LoRA (r 8,
alpha 16, dropout 0.05) on the LLM's `q_proj`/`v_proj`, and the mask decoder, the `[SEG]` projector, the token
embeddings and the LM head fully trainable. AURORA's own target matching also put LoRA on the audio encoder and
SAM's decoder attention (its exclusions are commented out); here the targets are a regex that matches the LLM
attention only.

Two ways to apply it:

- with TRL: pass `peft_config=lora_config(model, policy)` to the trainer (it calls `get_peft_model`, which freezes
  everything but LoRA and `modules_to_save`), then call [`freeze_unused_parameters`] on `trainer.model` for DDP;
- standalone: `model = apply_training_policy(model, policy)`.
"""

from dataclasses import dataclass, field

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
        train_mask_decoder / train_projector / train_embeddings / train_lm_head (`bool`, defaults to `True`).
        freeze_unused (`bool`, *optional*, defaults to `True`): Freeze [`UNUSED_PARAMETERS`] (needed under DDP).
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
    freeze_unused: bool = True
    extra_modules_to_save: list[str] = field(default_factory=list)

    def modules_to_save(self) -> list[str]:
        """Module-name suffixes trained fully next to LoRA (PEFT keeps a trainable copy of each)."""
        names = []
        if self.train_projector:
            names.append("seg_projector")
        if self.train_mask_decoder:
            names.append("mask_decoder")
        if self.train_lm_head:
            names.append("lm_head")
        if self.train_embeddings:
            names.append("embed_tokens")
        return names + list(self.extra_modules_to_save)


def lora_config(model, policy: TrainingPolicy | None = None) -> LoraConfig:
    """The PEFT [`~peft.LoraConfig`] of `policy` for `model` (pass it to a TRL trainer as `peft_config`)."""
    policy = policy or TrainingPolicy()
    from .modeling_aurora import lora_target_regex

    return LoraConfig(
        r=policy.lora_r,
        lora_alpha=policy.lora_alpha,
        lora_dropout=policy.lora_dropout,
        target_modules=policy.lora_target_modules or lora_target_regex(model),
        modules_to_save=policy.modules_to_save(),
        bias="none",
        task_type="CAUSAL_LM",
    )


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
    from .modeling_aurora import _unwrap

    base = _unwrap(model)
    if policy.use_lora:
        model = get_peft_model(model, lora_config(base, policy))
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
