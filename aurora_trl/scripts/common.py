"""What every stage script shares: data and model loading, the training policy, the run itself and its end.

Stage scripts (`aurora_trl/scripts/sft.py`, `aurora_trl/scripts/grpo.py`) keep TRL's script shape,
`main(script_args, training_args, model_args)` + `make_parser()`; their `main` is [`run_stage`] with their trainer.
"""

import os
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from accelerate import PartialState
from datasets import load_dataset, load_from_disk
from transformers import set_seed
from trl import ModelConfig, ScriptArguments, get_quantization_config

from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.export import save_merged_model
from aurora_trl.modeling.hub import model_card
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.modeling.processing import DEFAULT_AUDIO_SECONDS, DEFAULT_MAX_PIXELS, bound_processor
from aurora_trl.reporting import check_report_to
from aurora_trl.stages import Stage
from aurora_trl.text import build_prompt
from aurora_trl.trainers.hub_push import MERGED_DIR
from aurora_trl.trainers.resume import resume_checkpoint


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
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata={
            "help": "Largest frame area in pixels the LLM sees (larger frames are resized down, aspect kept); saved "
            "with the processor, so eval, predict and the demo use it too. Default 384² as AURORA's vision tower: "
            "180 tokens for a 16:9 frame, 169 for a square one."
        },
    )
    audio_seconds: float = field(
        default=DEFAULT_AUDIO_SECONDS,
        metadata={
            "help": "Audio length the features are padded or cut to (Ref-AVS clips are 10 s); saved with the "
            "processor."
        },
    )
    token_rows: str = field(
        default="seg",
        metadata={
            "help": "Rows of the embeddings and the LM head that train with LoRA: seg (the [SEG] row only) or all "
            "(whole copies, as AURORA; for a model whose head is untrained, like the tiny random one).",
            "choices": ["seg", "all"],
        },
    )
    train_mask_decoder: bool = field(
        default=True,
        metadata={
            "help": "Train SAM's mask decoder (AURORA does). False keeps it as loaded: a pretrained decoder that "
            "follows its prompt, which the tiny stages, whose answers cannot see where the object is, would "
            "otherwise teach to ignore the prompt."
        },
    )
    train_projector: bool = field(
        default=True,
        metadata={"help": "Train the [SEG] projector (AURORA does). False keeps it as loaded, e.g. a grounded one."},
    )
    merged_dtype: str = field(
        default="auto",
        metadata={
            "help": "Dtype of the merged model in output_dir/merged: auto (the dtype the model was loaded in, never "
            "4-bit), bfloat16, float16 or float32.",
            "choices": ["auto", "bfloat16", "float16", "float32"],
        },
    )


def load_data(script_args: AuroraScriptArguments):
    """The data set: a local folder from `aurora-trl data build` (`load_from_disk`) or a Hub data set."""
    if os.path.isdir(script_args.dataset_name):
        return load_from_disk(script_args.dataset_name)
    return load_dataset(script_args.dataset_name, script_args.dataset_config)


def _comparable(prompt: list[dict]) -> list:
    """A prompt as (role, [(block type, text)]) whether built or read back from Arrow (which adds `text: None`)."""
    return [(m["role"], [(b["type"], b.get("text")) for b in m["content"]]) for m in prompt]


def check_prompts(dataset, name: str) -> None:
    """Refuse a split whose stored `prompt` column is not what `aurora_trl.text.build_prompt` makes of each row.

    Training builds every prompt with `build_prompt`, as inference does; the column is stored for TRL's GRPO, which
    reads it. A data set built when the prompt was another would train on one prompt and show TRL another.
    """
    if dataset is None or "prompt" not in dataset.column_names:
        return
    import pyarrow.compute as pc

    frames = pc.list_value_length(dataset.with_format("arrow")[:]["images"]).to_pylist()
    rows = zip(dataset["uid"], dataset["expression"], frames, dataset["prompt"])
    stale = [uid for uid, text, n, stored in rows if _comparable(stored) != _comparable(build_prompt(text, n))]
    if stale:
        raise ValueError(
            f"{name}: {len(stale)} of {len(dataset)} rows store another prompt than this version builds (first: "
            f"{stale[0]}); the data set was built by an earlier version. Rebuild it with `aurora-trl data build`."
        )


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
        quantization.llm_int8_skip_modules = AuroraForSegmentation.unquantized_modules()
        kwargs.update(quantization_config=quantization, device_map={"": str(PartialState().device)})
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    processor = bound_processor(
        load_processor(path, trust_remote_code=trust_remote_code), script_args.max_pixels, script_args.audio_seconds
    )
    if config.model_type == AuroraForSegmentation.config_class.model_type:
        check_base_only_options(script_args, config, path)
        return AuroraForSegmentation.from_pretrained(path, **kwargs), processor
    overrides = {"sam_image_size": script_args.sam_image_size} if script_args.sam_image_size else None
    return AuroraForSegmentation.from_base(
        path, processor, sam_checkpoint=script_args.sam_checkpoint, config_overrides=overrides, **kwargs
    )


def check_base_only_options(script_args: AuroraScriptArguments, config, path) -> None:
    """Refuse the options that only take effect when a model is built from a base checkpoint, given with a model
    that is already AURORA's: its SAM weights and input size come from its own checkpoint."""
    ignored = []
    if script_args.sam_checkpoint is not None:
        ignored.append(f"sam_checkpoint {script_args.sam_checkpoint}")
    if script_args.sam_image_size not in (None, config.sam_image_size):
        ignored.append(f"sam_image_size {script_args.sam_image_size} (its SAM runs at {config.sam_image_size} px)")
    if ignored:
        raise ValueError(
            f"{path} is already an AURORA model, so {' and '.join(ignored)} cannot take effect: these build a model "
            "from a base checkpoint. Leave them out, or start from the base checkpoint."
        )


def training_policy(
    model_args: ModelConfig,
    training_args=None,
    token_rows: str = "seg",
    train_mask_decoder: bool = True,
    train_projector: bool = True,
) -> TrainingPolicy:
    """AURORA's trainable parts, with LoRA as `ModelConfig` says (`use_peft`, `lora_r`, ...), less the mask decoder
    or the projector when their `train_*` flag is off.

    Under DeepSpeed the engine keeps float32 master weights itself and wants one dtype in its (sharded) parameters,
    so nothing is cast to float32 here. Under ZeRO-3 the `[SEG]` rows train as masked copies (`TrainingPolicy`'s
    `token_rows="seg-masked"`), and the decoder's unused parameters stay trainable: ZeRO-3 ignores parameters
    without a gradient, and the adapter it saves leaves out frozen parameters, which PEFT then misses inside the
    decoder's trainable copy.
    """
    plugin = getattr(training_args, "deepspeed_plugin", None)
    zero3 = plugin is not None and plugin.zero_stage == 3
    return TrainingPolicy(
        token_rows="seg-masked" if zero3 and token_rows == "seg" else token_rows,
        freeze_unused=not zero3,
        trainable_in_float32=plugin is None,
        use_lora=model_args.use_peft,
        lora_r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        lora_target_modules=model_args.lora_target_modules
        if isinstance(model_args.lora_target_modules, str)
        else None,
        train_llm=not model_args.use_peft,
        train_mask_decoder=train_mask_decoder,
        train_projector=train_projector,
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


def check_fsdp_device(training_args) -> None:
    """Refuse FSDP where accelerate would not run it: without an accelerator (CPU only), accelerate silently runs the
    FSDP configuration as plain data parallel, every rank holding the whole model."""
    asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" or bool(training_args.fsdp)
    if asked and PartialState().device.type == "cpu":
        raise ValueError(
            "FSDP needs GPUs (or other accelerators): on a CPU, accelerate would run this FSDP configuration as plain "
            "data parallel, with the whole model on every rank. To shard on CPUs use DeepSpeed ZeRO-3 "
            "(--config_file recipes/accelerate/zero3.yaml), or run the FSDP configuration on GPUs."
        )


def prepare_run(script_args: AuroraScriptArguments, training_args, model_args: ModelConfig):
    """`(train split, eval split or None, model with AURORA's training policy applied, processor)` of a run.

    Checks first that the `report_to` integrations are installed, that the sharding asked for can run here and that
    `output_dir` is writable: a clear error now rather than a failed, silently unsharded or lost run later.
    """
    check_report_to(training_args.report_to)
    check_fsdp_device(training_args)
    if training_args.should_save:  # the process that writes checkpoints
        check_output_dir(training_args.output_dir)
    dataset = load_data(script_args)
    train = dataset[script_args.dataset_train_split]
    check_prompts(train, script_args.dataset_train_split)
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    evaluate = training_args.eval_strategy != "no" and script_args.dataset_test_split in dataset
    evaluation = dataset[script_args.dataset_test_split] if evaluate else None
    check_prompts(evaluation, script_args.dataset_test_split)
    model, processor = load_model(script_args, model_args, getattr(training_args, "trust_remote_code", False))
    policy = training_policy(
        model_args,
        training_args,
        script_args.token_rows,
        train_mask_decoder=script_args.train_mask_decoder,
        train_projector=script_args.train_projector,
    )
    model = apply_training_policy(model, policy)
    return train, evaluation, model, processor


def run_stage(trainer_class, stage: Stage, script_args, training_args, model_args, callbacks=None, **trainer_kwargs):
    """What each stage script's `main` does: load the data and the model, train (resuming only from a complete
    checkpoint), and finish the run ([`finish_run`]); returns the trainer."""
    set_seed(training_args.seed)  # prepare_run draws LoRA's A matrices, before the Trainer seeds
    train, evaluation, model, processor = prepare_run(script_args, training_args, model_args)
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=processor,
        callbacks=callbacks,
        **trainer_kwargs,
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
    finish_run(trainer, processor, script_args, training_args, stage)
    return trainer


def save_merged(
    model, processor, out_dir: str, stage: Stage | str, datasets=None, dtype=None, is_main=True, card_options=None
):
    """The full model, LoRA and token rows merged, dequantised and gathered, with its processor and model card: what
    the next stage starts from (see `aurora_trl.modeling.export`). Every process calls this (sharded weights are
    gathered together); the main process writes. `card_options` go to [`model_card`] (repo id, hyperparameters).

    The output folder itself holds the adapter, as TRL saves it; the trainer's model is left as it is.
    """
    full = save_merged_model(model, out_dir, dtype, is_main_process=is_main)
    if not is_main:
        return
    processor.save_pretrained(out_dir)
    card = model_card(full, stage=stage, datasets=datasets, **(card_options or {}))
    (Path(out_dir) / "README.md").write_text(card, encoding="utf-8")


def finish_run(trainer, processor, script_args, training_args, stage: Stage) -> None:
    """Save the adapter (as TRL does), the log, the processor and the merged model with its card; push the merged
    model to the Hub repo's root if asked (see `aurora_trl.trainers.hub_push`)."""
    trainer.save_model(training_args.output_dir, _internal_call=True)  # no push yet: the merged model comes next
    trainer.save_state()  # trainer_state.json: the log history, next to the model
    processor.save_pretrained(training_args.output_dir)
    repo_id = getattr(trainer, "hub_model_id", None) if training_args.push_to_hub else None
    save_merged(
        trainer.model_wrapped,
        processor,
        os.path.join(training_args.output_dir, MERGED_DIR),
        stage,
        [script_args.dataset_name],
        dtype=script_args.merged_dtype,
        is_main=trainer.accelerator.is_main_process,
        card_options={"repo_id": repo_id, "hyperparameters": card_hyperparameters(training_args)},
    )
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message=f"{stage.label}: merged model")


# The training options a model card lists: what a reader needs to reproduce the run beside its recipe.
CARD_HYPERPARAMETERS = (
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
    "bf16",
    "sft_target",
    "ce_loss_weight",
    "bce_loss_weight",
    "dice_loss_weight",
    "distill_loss_weight",
    "num_generations",
    "max_completion_length",
    "temperature",
    "top_p",
    "beta",
    "loss_type",
    "reward_weights",
)


def card_hyperparameters(training_args) -> dict:
    """The [`CARD_HYPERPARAMETERS`] a config has, with their values (an option's enum as its value: `linear`)."""
    values = {name: getattr(training_args, name) for name in CARD_HYPERPARAMETERS if hasattr(training_args, name)}
    return {name: value.value if isinstance(value, Enum) else value for name, value in values.items()}
