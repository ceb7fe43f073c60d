"""AURORA's supervised stages: 0 (direct answers, the distillation teacher), 1 (CoT + distillation), 2 (reflective).

    accelerate launch recipes/sft.yaml                      # the recipe is also a Python file (see recipes/README.md)
    aurora-trl train recipes/sft.yaml --learning_rate 5e-5  # the same, with the recipe's `accelerate:` settings
    python recipes/tiny/sft.yaml                            # one process, no accelerate
    python -m aurora_trl.sft --config recipes/tiny/sft.yaml # the same, TRL's script style

Options come from three dataclasses, as in TRL's own scripts: [`AuroraScriptArguments`] (data set, SAM),
[`AuroraSFTConfig`] (training and loss weights) and TRL's `ModelConfig` (model path, dtype, LoRA). Command-line
flags override the recipe.
"""

from transformers import set_seed
from trl import ModelConfig, TrlParser

from aurora_trl.script_utils import AuroraScriptArguments, finish_run, prepare_run
from aurora_trl.trainers.resume import resume_checkpoint
from aurora_trl.trainers.sft_config import AuroraSFTConfig
from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer


STAGE_NAMES = {"direct": "Stage 0: direct-answer teacher", "reasoning": "sft", "reflective": "crst"}


def main(script_args: AuroraScriptArguments, training_args: AuroraSFTConfig, model_args: ModelConfig, callbacks=None):
    set_seed(training_args.seed)  # prepare_run draws LoRA's A matrices, before the Trainer seeds
    train, evaluation, model, processor = prepare_run(script_args, training_args, model_args)
    trainer = AuroraSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=processor,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))  # never a half-written one
    finish_run(trainer, processor, script_args, training_args, STAGE_NAMES[training_args.sft_target])
    return trainer


def make_parser(subparsers=None) -> TrlParser:
    dataclass_types = (AuroraScriptArguments, AuroraSFTConfig, ModelConfig)
    if subparsers is not None:
        return subparsers.add_parser("sft", help="AURORA supervised stages", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types)


if __name__ == "__main__":
    import sys

    from aurora_trl.launch import script_main

    script_main(sys.argv[1:])
