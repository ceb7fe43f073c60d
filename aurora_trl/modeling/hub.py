"""Model cards and Hub upload for AURORA models.

[`push_to_hub`] writes the whole model (safetensors + config + generation config), the processor when given,
and a model card (`README.md`) into one folder and uploads it in one commit through `huggingface_hub.HfApi`.
The card records the base model, the training data, the stage and the metrics when they are known.
"""

import json
import re
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


# `aurora-trl eval` leaves its metrics in a local model folder under this name, for the card of a later push.
EVAL_RESULTS = "eval_results.json"


def benchmark_metrics(results: dict) -> dict[str, float]:
    """`{"test_s/J": .., "test_s/F": .., "test_n/S": ..}` from an `aurora-trl eval` `metrics.json`, Ref-AVS's
    protocol only (AURORA's variant is not comparable with the benchmark's table)."""
    if results.get("protocol") != "refavs":
        return {}
    return {
        f"{split}/{key}": float(value)
        for split, scores in results.items()
        if split.startswith("test_") or split == "mix"
        for key, value in scores.items()
        if key in ("J", "F", "S")
    }


def last_eval_metrics(model_dir) -> dict[str, float] | None:
    """The benchmark metrics `aurora-trl eval` left in a local model folder, or None."""
    path = Path(str(model_dir)) / EVAL_RESULTS
    if not path.is_file():
        return None
    return benchmark_metrics(json.loads(path.read_text(encoding="utf-8"))) or None


# A Hub id is `name` or `namespace/name`; anything else (a local folder, an absolute path) is not linked.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_ids(names: list[str] | None) -> tuple[list[str], list[str]]:
    """`(Hub ids, local paths)` among data set or model names: only Hub ids belong in card metadata."""
    hub, local = [], []
    for name in names or []:
        is_local = Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or not _HUB_ID.match(name)
        (local if is_local else hub).append(name)
    return hub, local


def model_card(
    model,
    repo_id: str | None = None,
    stage: Stage | str | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    hyperparameters: dict | None = None,
) -> str:
    """The text of a model card (YAML metadata + Markdown) for an AURORA model.

    Args:
        model ([`AuroraForSegmentation`]): The model (its config gives the base model and SAM settings).
        repo_id (`str`, *optional*): Hub repository, used in the title and the usage snippets.
        stage ([`~aurora_trl.stages.Stage`] or its key, *optional*): The training stage that made the model.
        base_model (`str`, *optional*): Base checkpoint; defaults to `config.base_model_name_or_path`.
        datasets (`list[str]`, *optional*): Training data sets; Hub ids go into the metadata, local paths are only
            said to be local.
        metrics (`dict[str, float]`, *optional*): Benchmark results of `aurora-trl eval` (e.g.
            `{"test_s/J": 0.51, "test_s/F": 0.6, "test_n/S": 0.1}`); absent, the card says "Not evaluated".
        hyperparameters (`dict`, *optional*): The training options of the run that made the model.
    """
    config = model.config
    stage = as_stage(stage)
    base_model = base_model or getattr(config, "base_model_name_or_path", None)
    base_on_hub, _ = hub_ids([base_model] if base_model else [])
    data_on_hub, data_local = hub_ids(datasets)
    tags = ["aurora-trl", "audio-visual-segmentation", "referring-segmentation", "sam", "trl"]
    if stage:
        tags.append(stage.hub_tag)
    data = ModelCardData(
        library_name="transformers",
        license="other",
        license_name="base-model-license",
        license_link=f"https://huggingface.co/{base_on_hub[0]}" if base_on_hub else None,
        base_model=base_on_hub[0] if base_on_hub else None,
        datasets=data_on_hub or None,
        tags=tags,
        pipeline_tag="image-segmentation",
    )
    name = repo_id or "path/to/this/model"
    data_text = ", ".join(
        [f"[{d}](https://huggingface.co/datasets/{d})" for d in data_on_hub] + ["a local data set"] * bool(data_local)
    )
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {repo_id or 'AURORA model'}",
        "",
        "Audio-visual referring segmentation with reasoning (AURORA, AAAI 2026), trained with aurora-trl on "
        "transformers and TRL: an audio-visual LLM reads a clip's frames, its audio and a referring expression, "
        "reasons step by step (image, audio, reference, answer) and writes `[SEG]`; the `[SEG]` hidden state, "
        "through a projector, prompts a SAM mask decoder on every frame.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | {base_model or 'unknown'} |",
        f"| architecture | `{type(model).__name__}` (backbone `{config.model_type}`) |",
        f"| stage | {f'{stage.label}: {stage.description} (recipe `recipes/{stage.recipe}`)' if stage else 'unknown'} |",
        f"| training data | {data_text or 'unknown'} |",
        f"| SAM | ViT {config.sam_embed_dim}×{config.sam_depth} at {config.sam_image_size}² px |",
        "",
        "## Metrics",
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())]
    else:
        lines.append("Not evaluated: run `aurora-trl eval` on Ref-AVS's test splits for J, F and null S.")
    if hyperparameters:
        lines += ["", "## Training hyperparameters", "", "| option | value |", "|---|---|"]
        lines += [f"| `{key}` | {value} |" for key, value in hyperparameters.items()]
    lines += [
        "",
        "## Usage",
        "",
        "The repository root is the whole model (LoRA merged) with its processor; training checkpoints, when pushed, "
        "are under `checkpoints/`.",
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
        "```bash",
        f"aurora-trl predict --model {name} --frames FRAMES_DIR --audio clip.wav "
        '--expression "the dog that barks first" --out prediction',
        f"aurora-trl demo --model {name}",
        "```",
        "",
        "## Limits",
        "",
        "- Trained for Ref-AVS-style clips (10 frames, 10 s of audio, English expressions); other lengths and domains "
        "are untested.",
        "- Answers an expression that refers to nothing with an empty mask only as often as its null-S score says.",
        "- The license of the base model applies to this model; SAM's weights are Apache-2.0.",
        "",
        "## Citation",
        "",
        "AURORA: AAAI 2026, arXiv 2508.02149. Ref-AVS: *Ref-AVS: Refer and Segment Objects in Audio-Visual Scenes*, "
        "ECCV 2024, arXiv 2407.10957.",
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

    The repository is created when missing. See [`model_card`] for `stage`, `base_model`, `datasets`, `metrics`;
    `metrics` default to those of the last `aurora-trl eval` of the model's folder.
    """
    if metrics is None:
        metrics = last_eval_metrics(model.name_or_path)
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
