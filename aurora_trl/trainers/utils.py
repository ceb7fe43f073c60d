"""Small pieces both trainers use."""

from contextlib import contextmanager

from aurora_trl.modeling.modeling_aurora import unwrap_aurora_model
from aurora_trl.modeling.policy import keep_trainable_in_float32


@contextmanager
def backbone_hidden_state(model):
    """Keep the last hidden state of the first backbone call made inside the block: `with ... as captured:` then
    `captured["hidden"]`.

    TRL's fused LM head calls the backbone itself and returns no hidden states; this hook gives the `[SEG]` state
    without a second forward. The first call is kept because TRL may run the backbone again under no_grad (e.g.
    for label smoothing). The hook returns None: a returned value would replace the backbone's output.
    """
    captured = {}

    def keep(module, args, output):
        captured.setdefault("hidden", output.last_hidden_state)

    hook = unwrap_aurora_model(model).get_backbone().register_forward_hook(keep)
    try:
        yield captured
    finally:
        hook.remove()


@contextmanager
def adapters_disabled(model):
    """PEFT's `model.disable_adapter()`, leaving every parameter's `requires_grad` as it was: on leaving it, PEFT
    makes all parameters of its `modules_to_save` copies trainable again, also those the training policy froze
    (the mask decoder's unused heads)."""
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    try:
        with model.disable_adapter():
            yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def each_eval_split(eval_dataset, transform):
    """`transform(split, name)` applied to a Trainer's `eval_dataset`, one data set or a dict of named ones."""
    if isinstance(eval_dataset, dict):
        return {name: transform(split, name) for name, split in eval_dataset.items()}
    return transform(eval_dataset, "eval_dataset")


def weights_are_sharded(trainer) -> bool:
    """Whether the engine shards the model's weights across processes (DeepSpeed ZeRO-3, FSDP): every process then
    has to run the same module forwards at each step, which per-process caches of forward results would break."""
    if trainer.is_fsdp_enabled:
        return True
    if not trainer.is_deepspeed_enabled:
        return False
    from transformers.integrations import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


def prepare_for_engine(trainer) -> None:
    """What both trainers do to their model once TRL has set it up, before accelerate wraps it.

    - **Precision.** Trainable parameters go back to float32: TRL casts a quantised model's trainable parameters to
      bf16 (QLoRA's adapter recipe), which would also make the projector, the mask decoder and the token rows train
      without a float32 master. Under DeepSpeed the module trains in DeepSpeed's precision and DeepSpeed keeps the
      float32 master weights itself, so nothing is cast here.
    - **ZeRO-3.** DeepSpeed gathers a module's sharded weights when that module's forward runs, and only the module's
      own weights. SAM's prompt encoder and the mask decoder read their sub-modules' weights directly, so they are
      marked as ZeRO-3 leaf modules: their whole subtree is gathered when they run.
    """
    if not trainer.is_deepspeed_enabled:
        keep_trainable_in_float32(trainer.model)
        return
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        from deepspeed.utils import set_z3_leaf_modules

        from aurora_trl.modeling.sam import PairedMaskDecoder, PromptEncoder

        set_z3_leaf_modules(trainer.model, [PromptEncoder, PairedMaskDecoder])
