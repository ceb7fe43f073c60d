"""What every stage's entry point shares: data and model loading, the training policy, and the end of a run.

Stage modules (`aurora_trl/sft.py`, `aurora_trl/grpo.py`) keep TRL's script shape, `main(script_args, training_args,
model_args)` + `make_parser()`, and call these.
"""

import copy
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from datasets import load_dataset, load_from_disk
from trl import ModelConfig, ScriptArguments, get_quantization_config

from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.hub import model_card
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy


# Each run also writes the full (LoRA-merged) model here, under output_dir: the next stage starts from it.
MERGED_DIR = "merged"
QUANTIZATION_SKIP = ("sam", "seg_projector", "lm_head", "audio_tower", "visual")


@dataclass
class AuroraScriptArguments(ScriptArguments):
    """Data and model-building options. `dataset_name` is a folder written by `aurora-trl data build` or a Hub id."""

    dataset_test_split: str = field(default="val", metadata={"help": "Split used for evaluation."})
    sam_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Official SAM .pth (vit_b/l/h) loaded when the model is built from a base Omni checkpoint."},
    )
    sam_image_size: int | None = field(
        default=None, metadata={"help": "SAM input size when building from a base checkpoint (AURORA 224, LISA 1024)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})


def load_data(script_args: AuroraScriptArguments):
    """The data set: a local folder from `aurora-trl data build` (`load_from_disk`) or a Hub data set."""
    if os.path.isdir(script_args.dataset_name):
        return load_from_disk(script_args.dataset_name)
    return load_dataset(script_args.dataset_name, script_args.dataset_config)


def load_model(script_args: AuroraScriptArguments, model_args: ModelConfig, trust_remote_code: bool = False):
    """An AURORA checkpoint as it is, or a base Omni checkpoint extended with `[SEG]`, the projector and SAM.

    `trust_remote_code` (the training config's, False unless a recipe turns it on) is passed explicitly: left at
    None, transformers would ask on the terminal whether to run a checkpoint's own code.
    """
    from transformers import AutoConfig

    path = model_args.model_name_or_path
    kwargs = {"dtype": model_args.dtype} if model_args.dtype not in (None, "auto") else {}
    quantization = get_quantization_config(model_args)  # QLoRA: `load_in_4bit: True` (bitsandbytes)
    if quantization is not None:
        # Only the LLM is quantised: SAM, the projector, the towers and the LM head stay in full precision.
        quantization.llm_int8_skip_modules = list(QUANTIZATION_SKIP)
        kwargs.update(quantization_config=quantization, device_map={"": str(PartialState().device)})
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    processor = load_processor(path, trust_remote_code=trust_remote_code)
    if config.model_type == AuroraForSegmentation.config_class.model_type:
        return AuroraForSegmentation.from_pretrained(path, **kwargs), processor
    overrides = {"sam_image_size": script_args.sam_image_size} if script_args.sam_image_size else None
    return AuroraForSegmentation.from_base(
        path, processor, sam_checkpoint=script_args.sam_checkpoint, config_overrides=overrides, **kwargs
    )


def training_policy(model_args: ModelConfig) -> TrainingPolicy:
    """AURORA's trainable parts, with LoRA as `ModelConfig` says (`use_peft`, `lora_r`, ...)."""
    return TrainingPolicy(
        use_lora=model_args.use_peft,
        lora_r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        lora_target_modules=model_args.lora_target_modules
        if isinstance(model_args.lora_target_modules, str)
        else None,
        train_llm=not model_args.use_peft,
    )


class OutputDirError(ValueError):
    """`output_dir` cannot hold the run's files."""


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """Raise `OutputDirError` unless `output_dir` is (or can be made) a folder this process can write in.

    Why here: the Trainer creates `output_dir` when it is built, after the data and the model are loaded, and an
    existing read-only folder passes that; the first checkpoint would then fail after `save_steps` of training.
    The probe writes and removes one small file.
    """
    path = Path(output_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"output_dir {path} is not writable: it is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".aurora-write-test-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as err:
        reason = err.strerror or str(err)
        if isinstance(err, (FileExistsError, NotADirectoryError)):
            reason += " (a parent of it is a file)"
        raise OutputDirError(f"output_dir {path} is not writable: {reason}") from None


def prepare_run(script_args: AuroraScriptArguments, training_args, model_args: ModelConfig):
    """`(train split, eval split or None, model with AURORA's training policy applied, processor)` of a run.

    Checks first that `output_dir` is writable: a clear error now rather than a lost run at the first save.
    """
    if training_args.should_save:  # the process that writes checkpoints
        check_output_dir(training_args.output_dir)
    dataset = load_data(script_args)
    train = dataset[script_args.dataset_train_split]
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    evaluate = training_args.eval_strategy != "no" and script_args.dataset_test_split in dataset
    model, processor = load_model(script_args, model_args, getattr(training_args, "trust_remote_code", False))
    model = apply_training_policy(model, training_policy(model_args))
    return train, dataset[script_args.dataset_test_split] if evaluate else None, model, processor


def last_eval_metrics(log_history: list[dict]) -> dict | None:
    """The metrics of the last evaluation in a Trainer log, for the model card."""
    for entry in reversed(log_history):
        if "eval_loss" in entry:
            return {k: v for k, v in entry.items() if k.startswith("eval_")}
    return None


def save_merged(model, processor, out_dir: str, stage: str, datasets=None, metrics=None) -> None:
    """The full model, LoRA merged in, with its processor and model card: what the next stage starts from.

    The output folder itself holds the adapter, as TRL saves it; merging a copy keeps the trainer's model as is.
    """
    full = copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model
    full.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    card = model_card(full, stage=stage, datasets=datasets, metrics=metrics)
    (Path(out_dir) / "README.md").write_text(card, encoding="utf-8")


def finish_run(trainer, processor, script_args, training_args, stage: str) -> None:
    """Save the adapter (as TRL does), the log, the processor and the merged model with its card; push if asked."""
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json: the log history, next to the model
    processor.save_pretrained(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        merged_dir = os.path.join(training_args.output_dir, MERGED_DIR)
        save_merged(
            trainer.model,
            processor,
            merged_dir,
            stage,
            [script_args.dataset_name],
            last_eval_metrics(trainer.state.log_history),
        )
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
