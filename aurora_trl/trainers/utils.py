"""Small pieces both trainers use."""

from contextlib import contextmanager


def aurora_model(model):
    """The `AuroraForSegmentation` inside accelerate/DDP and PEFT wrappers."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


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

    hook = aurora_model(model).get_backbone().register_forward_hook(keep)
    try:
        yield captured
    finally:
        hook.remove()
