"""Model cards and Hub upload for AURORA models.

[`push_to_hub`] writes the whole model (safetensors + config + generation config), the processor when given,
and a model card (`README.md`) into one folder and uploads it in one commit through `huggingface_hub.HfApi`.
The card records the base model, the training data, the stage and the metrics when they are known.
"""

import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCardData

from aurora_trl.stages import BY_KEY, Stage


def as_stage(stage: Stage | str | None) -> Stage | None:
    """A [`~aurora_trl.stages.Stage`], from itself or its key (`"teacher"`, `"sft"`, `"reflect"`, `"grpo"`)."""
    if stage is None or isinstance(stage, Stage):
        return stage
    if stage not in BY_KEY:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(BY_KEY)}")
    return BY_KEY[stage]


def model_card(
    model,
    repo_id: str | None = None,
    stage: Stage | str | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    metrics: dict[str, float] | None = None,
) -> str:
    """The text of a model card (YAML metadata + Markdown) for an AURORA model.

    Args:
        model ([`AuroraForSegmentation`]): The model (its config gives the base model and SAM settings).
        repo_id (`str`, *optional*): Hub repository, used in the usage snippet.
        stage ([`~aurora_trl.stages.Stage`] or its key, *optional*): The training stage that made the model.
        base_model (`str`, *optional*): Base checkpoint; defaults to `config.base_model_name_or_path`.
        datasets (`list[str]`, *optional*): Training data sets (Hub ids or names).
        metrics (`dict[str, float]`, *optional*): Evaluation results (e.g. `{"test_s/J": 0.51, "test_s/F": 0.6}`).
    """
    config = model.config
    stage = as_stage(stage)
    base_model = base_model or getattr(config, "base_model_name_or_path", None)
    tags = ["aurora-trl", "audio-visual-segmentation", "referring-segmentation", "sam", "trl"]
    if stage:
        tags.append(stage.hub_tag)
    data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        base_model=base_model,
        datasets=list(datasets) if datasets else None,
        tags=tags,
        metrics=sorted(metrics) if metrics else None,
        pipeline_tag="image-segmentation",
    )
    name = repo_id or "AURORA model"
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {name}",
        "",
        "Audio-visual referring segmentation with reasoning (AURORA, AAAI 2026), built with "
        "aurora-trl on transformers and TRL: an audio-visual LLM reads the clip's frames, "
        "its audio and a referring expression, reasons step by step, and emits `[SEG]`; the `[SEG]` hidden state, "
        "through a projector, prompts a SAM mask decoder on every frame.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | {base_model or 'unknown'} |",
        f"| architecture | `{type(model).__name__}` (backbone `{config.model_type}`) |",
        f"| stage | {f'{stage.label}: {stage.description}' if stage else 'unknown'} |",
        f"| training data | {', '.join(datasets) if datasets else 'unknown'} |",
        f"| SAM | ViT {config.sam_embed_dim}×{config.sam_depth} at {config.sam_image_size}² px |",
        "",
        "## Metrics",
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())]
    else:
        lines.append("Not evaluated yet.")
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from aurora_trl.modeling import AuroraForSegmentation, load_processor",
        "",
        f'model = AuroraForSegmentation.from_pretrained("{name}")',
        f'processor = load_processor("{name}")',
        'out = model.segment(frames, audio, "the dog that barks first", processor=processor)',
        "out.text, out.mask_logits  # reasoning, (T, H, W) logits",
        "```",
        "",
    ]
    return "\n".join(lines)


def push_to_hub(
    model,
    repo_id: str,
    processor=None,
    stage: Stage | str | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
):
    """Upload `model` (and `processor`) with a model card to `repo_id` in one commit; returns the commit info.

    The repository is created when missing. See [`model_card`] for `stage`, `base_model`, `datasets`, `metrics`.
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        if processor is not None:
            processor.save_pretrained(folder)
        card = model_card(model, repo_id, stage=stage, base_model=base_model, datasets=datasets, metrics=metrics)
        (Path(folder) / "README.md").write_text(card, encoding="utf-8")
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            commit_message=commit_message or f"Upload AURORA model ({as_stage(stage).label if stage else 'model'})",
            revision=revision,
            create_pr=create_pr,
        )
