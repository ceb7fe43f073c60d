"""AURORA's Stage 3: GRPO with format, class and mask-IoU rewards, from the Stage-2 (or Stage-1) model.

    accelerate launch recipes/grpo.yaml                      # the recipe is also a Python file (recipes/README.md)
    aurora-trl train recipes/grpo.yaml --learning_rate 5e-6  # the same, with the recipe's `accelerate:` settings
    python recipes/tiny/grpo.yaml                            # one process, no accelerate
    python -m aurora_trl.grpo --config recipes/tiny/grpo.yaml # the same, TRL's script style

Options: [`AuroraGRPOScriptArguments`] (data set, SAM, reward names), [`AuroraGRPOConfig`] (TRL's GRPO options,
`reward_weights`, mask-loss weights) and TRL's `ModelConfig` (model path, dtype, LoRA, 4-bit loading).
"""

import importlib
from dataclasses import dataclass, field

from transformers import set_seed
from trl import ModelConfig, TrlParser

from aurora_trl.rewards import REWARD_FUNCS
from aurora_trl.script_utils import AuroraScriptArguments, finish_run, prepare_run
from aurora_trl.trainers.grpo_config import AuroraGRPOConfig
from aurora_trl.trainers.grpo_trainer import AURORA_REWARDS, AuroraGRPOTrainer
from aurora_trl.trainers.resume import resume_checkpoint


@dataclass
class AuroraGRPOScriptArguments(AuroraScriptArguments):
    reward_funcs: list[str] = field(
        default_factory=lambda: list(AURORA_REWARDS),
        metadata={
            "help": f"Reward functions: names from {sorted(REWARD_FUNCS)} or dotted paths (my_pkg.my_reward). "
            "Weights: `reward_weights`, in the same order."
        },
    )


def reward_functions(names: list[str]) -> list:
    """The reward callables for recipe names; a dotted path imports a function of the user's own."""
    functions = []
    for name in names:
        if name in REWARD_FUNCS:
            functions.append(REWARD_FUNCS[name])
        elif "." in name:
            module, _, attribute = name.rpartition(".")
            functions.append(getattr(importlib.import_module(module), attribute))
        else:
            raise ValueError(f"unknown reward {name!r}: use one of {sorted(REWARD_FUNCS)} or a dotted path")
    return functions


def main(
    script_args: AuroraGRPOScriptArguments, training_args: AuroraGRPOConfig, model_args: ModelConfig, callbacks=None
):
    set_seed(training_args.seed)  # prepare_run draws LoRA's A matrices, before the Trainer seeds
    train, evaluation, model, processor = prepare_run(script_args, training_args, model_args)
    trainer = AuroraGRPOTrainer(
        model=model,
        reward_funcs=reward_functions(script_args.reward_funcs),
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=processor,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))  # never a half-written one
    finish_run(trainer, processor, script_args, training_args, "grpo")
    return trainer


def make_parser(subparsers=None) -> TrlParser:
    dataclass_types = (AuroraGRPOScriptArguments, AuroraGRPOConfig, ModelConfig)
    if subparsers is not None:
        return subparsers.add_parser("grpo", help="AURORA Stage 3 (GRPO)", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types)


if __name__ == "__main__":
    import sys

    from aurora_trl.launch import script_main

    script_main(sys.argv[1:])
