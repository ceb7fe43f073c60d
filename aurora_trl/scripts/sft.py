"""AURORA's supervised stages: 0 (direct answers, the distillation teacher), 1 (CoT + distillation), 2 (reflective).

    accelerate launch recipes/sft.yaml                      # the recipe is also a Python file (see recipes/README.md)
    aurora-trl train recipes/sft.yaml --learning_rate 5e-5  # the same, with the recipe's `accelerate:` settings
    python recipes/tiny/sft.yaml                            # one process, no accelerate
    python -m aurora_trl.scripts.sft --config recipes/tiny/sft.yaml # the same, TRL's script style

Options come from three dataclasses, as in TRL's own scripts: [`AuroraScriptArguments`] (data set, SAM),
[`AuroraSFTConfig`] (training and loss weights) and TRL's `ModelConfig` (model path, dtype, LoRA). Command-line
flags override the recipe.
"""

import sys

from trl import ModelConfig, TrlParser

from aurora_trl.scripts import launch
from aurora_trl.scripts.common import AuroraScriptArguments, run_stage
from aurora_trl.stages import supervised_stage
from aurora_trl.trainers.sft_config import AuroraSFTConfig
from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer
from aurora_trl.trainers.unsupported import mark_unsupported


# The trainer this script runs; `aurora_trl.stages` names it for each of the script's stages.
TRAINER = AuroraSFTTrainer


def main(script_args: AuroraScriptArguments, training_args: AuroraSFTConfig, model_args: ModelConfig, callbacks=None):
    stage = supervised_stage(training_args.sft_target)
    return run_stage(TRAINER, stage, script_args, training_args, model_args, callbacks)


def make_parser() -> TrlParser:
    return mark_unsupported(TrlParser((AuroraScriptArguments, AuroraSFTConfig, ModelConfig)), AuroraSFTConfig)


def run_recipe(path, argv: list[str] | None = None):
    """What a recipe's last line calls: [`launch.run_recipe`] with this script."""
    return launch.run_recipe(path, main, make_parser, argv)


if __name__ == "__main__":
    launch.run_script(sys.argv[1:], main, make_parser)
