"""AURORA's Stage 3: GRPO with format, class and mask-IoU rewards, from the Stage-2 (or Stage-1) model.

    accelerate launch recipes/grpo.yaml                      # the recipe is also a Python file (recipes/README.md)
    aurora-trl train recipes/grpo.yaml --learning_rate 5e-6  # the same, with the recipe's `accelerate:` settings
    python recipes/tiny/grpo.yaml                            # one process, no accelerate
    python -m aurora_trl.scripts.grpo --config recipes/tiny/grpo.yaml # the same, TRL's script style

Options: [`AuroraGRPOScriptArguments`] (data set, SAM, reward names), [`AuroraGRPOConfig`] (TRL's GRPO options,
`reward_weights`, mask-loss weights) and TRL's `ModelConfig` (model path, dtype, LoRA, 4-bit loading).
"""

import importlib
import sys
from dataclasses import dataclass, field

from trl import ModelConfig, TrlParser

from aurora_trl.rewards import REWARD_FUNCS
from aurora_trl.scripts import launch
from aurora_trl.scripts.common import AuroraScriptArguments, run_stage
from aurora_trl.stages import BY_KEY
from aurora_trl.trainers.grpo_config import AuroraGRPOConfig
from aurora_trl.trainers.grpo_trainer import AURORA_REWARDS, AuroraGRPOTrainer
from aurora_trl.trainers.unsupported import mark_unsupported


@dataclass
class AuroraGRPOScriptArguments(AuroraScriptArguments):
    reward_funcs: list[str] = field(
        default_factory=lambda: list(AURORA_REWARDS),
        metadata={
            "help": f"Reward functions: names from {sorted(REWARD_FUNCS)} or dotted paths (my_pkg.my_reward). "
            "Weights: `reward_weights`, in the same order."
        },
    )


# The trainer this script runs; `aurora_trl.stages` names it for its stage.
TRAINER = AuroraGRPOTrainer


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
    rewards = reward_functions(script_args.reward_funcs)
    stage = BY_KEY["grpo"]
    return run_stage(TRAINER, stage, script_args, training_args, model_args, callbacks, reward_funcs=rewards)


def make_parser() -> TrlParser:
    return mark_unsupported(TrlParser((AuroraGRPOScriptArguments, AuroraGRPOConfig, ModelConfig)), AuroraGRPOConfig)


def run_recipe(path, argv: list[str] | None = None):
    """What a recipe's last line calls: [`launch.run_recipe`] with this script."""
    return launch.run_recipe(path, main, make_parser, argv)


if __name__ == "__main__":
    launch.run_script(sys.argv[1:], main, make_parser)
