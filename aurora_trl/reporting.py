"""Reporting integrations (`report_to`): a check, at the start of a run, that each one named is installed, and the
text the GRPO trainer logs its prompts and completions as.

Why check first: transformers imports an integration only when the Trainer is built, after the data and the model
are loaded (minutes, on a real model), and a core install (`pip install aurora-trl`) has none of them.
"""

import transformers.integrations


# report_to name -> (transformers' check that it is installed, its name, what to pip install)
INTEGRATIONS = {
    "tensorboard": ("is_tensorboard_available", "TensorBoard", '"aurora-trl[tensorboard]"'),
    "wandb": ("is_wandb_available", "Weights & Biases", '"aurora-trl[wandb]"'),
    "trackio": ("is_trackio_available", "Trackio", '"aurora-trl[trackio]"'),
    "mlflow": ("is_mlflow_available", "MLflow", "mlflow"),
    "clearml": ("is_clearml_available", "ClearML", "clearml"),
    "dvclive": ("is_dvclive_available", "DVCLive", "dvclive"),
    "swanlab": ("is_swanlab_available", "SwanLab", "swanlab"),
    "codecarbon": ("is_codecarbon_available", "CodeCarbon", "codecarbon"),
}


def check_report_to(report_to) -> None:
    """Raise `ImportError` naming what to install for each integration in `report_to` that is not installed.

    Args:
        report_to (`str`, `list[str]` or `None`):
            The training arguments' `report_to`. `"all"` is not checked (transformers then picks the installed
            integrations only), nor are integrations this module does not know (transformers reports those).
    """
    if report_to is None or report_to in ("all", "none"):
        return
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    missing = []
    for name in names:
        if name not in INTEGRATIONS:
            continue
        is_available, title, package = INTEGRATIONS[name]
        # looked up at each call, so that a test can patch transformers' check
        if not getattr(transformers.integrations, is_available)():
            missing.append(
                f"report_to '{name}' needs {title}, which is not installed: pip install {package} "
                "(or set report_to: none)"
            )
    if missing:
        raise ImportError("\n".join(missing))


def conversation_text(conversation) -> str:
    """A prompt or completion, as TRL logs it, written as one readable string.

    TRL logs conversational prompts and completions as lists of message dicts whose content blocks differ in their
    keys (text blocks, image blocks stripped of their picture, keys that Arrow filled with `None`): W&B's table refuses
    such a column, and a reader wants the words anyway. System messages are left out (every row has the same one). A
    media block becomes its marker (`<image>`, `<audio>`), a run of identical ones `<image>×10`. When several turns
    remain, each starts with its role.

    Args:
        conversation (`str` or `list[dict]`):
            A prompt or completion: a string (returned as it is) or a list of `{"role", "content"}` messages whose
            content is a string or a list of `{"type": ...}` blocks.

    Returns:
        `str`: The text.

    Example:

    ```python
    >>> frames = [{"type": "image"}, {"type": "image"}]
    >>> conversation_text([{"role": "user", "content": [*frames, {"type": "text", "text": "Find the dog."}]}])
    '<image>×2 Find the dog.'
    ```
    """
    if isinstance(conversation, str):
        return conversation
    turns = [m for m in conversation if m.get("role") != "system"] or list(conversation)
    texts = [_content_text(m.get("content")) for m in turns]
    if len(turns) == 1:
        return texts[0]
    return "\n\n".join(f"{m.get('role')}: {text}" for m, text in zip(turns, texts))


def _content_text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    pieces = []  # [block type, text or marker, how many in a row]
    for block in content:
        kind = block.get("type")
        if kind == "text":
            pieces.append([kind, block.get("text") or "", 1])
        elif pieces and pieces[-1][0] == kind:
            pieces[-1][2] += 1
        else:
            pieces.append([kind, f"<{kind}>", 1])
    return " ".join(text if n == 1 else f"{text}×{n}" for _, text, n in pieces if text)
