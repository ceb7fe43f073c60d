"""AURORA's training stages: the one registry that the stage scripts, the model cards, the quickstart and the CLI read.

| stage | key | trainer (script) | learns |
|---|---|---|---|
| 0 | `teacher` | `AuroraSFTTrainer` (`scripts.sft`, `sft_target: direct`) | `It is {class} [SEG].`, Stage 1's teacher |
| 1 | `sft` | `AuroraSFTTrainer` (`scripts.sft`, `sft_target: reasoning`) | chain-of-thought paths + `[SEG]` distillation |
| 2 | `reflect` | `AuroraSFTTrainer` (`scripts.sft`, `sft_target: reflective`) | corrective reflective-style paths |
| 3 | `grpo` | `AuroraGRPOTrainer` (`scripts.grpo`) | GRPO with format, class and mask-IoU rewards |

Each stage has a recipe of the same name in `recipes/` (and `recipes/tiny/`), whose last line runs its script.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One training stage.

    Args:
        key (`str`): Short name; also the recipe's file name (`{key}.yaml`) and the Hub tag (`aurora-{key}`).
        number (`int`): AURORA's stage number (0 is the distillation teacher AURORA implies).
        label (`str`): Name in tables and model cards.
        description (`str`): What the stage trains, for model cards.
        trainer (`str`): The trainer class the stage script runs (the script's `TRAINER`).
        script (`str`): The stage script's module; the recipe's last line runs it.
        sft_target (`str`, *optional*): What a supervised stage answers (`AuroraSFTConfig.sft_target`).
    """

    key: str
    number: int
    label: str
    description: str
    trainer: str
    script: str
    sft_target: str | None = None

    @property
    def recipe(self) -> str:
        return f"{self.key}.yaml"

    @property
    def hub_tag(self) -> str:
        return f"aurora-{self.key}"


STAGES = (
    Stage(
        "teacher",
        0,
        "Stage 0: teacher",
        "direct answers `It is {class} [SEG].`, the teacher of Stage 1's [SEG] distillation",
        "AuroraSFTTrainer",
        "aurora_trl.scripts.sft",
        "direct",
    ),
    Stage(
        "sft",
        1,
        "Stage 1: CoT SFT + distillation",
        "supervised fine-tuning on chain-of-thought paths, with the mask losses and [SEG] distillation",
        "AuroraSFTTrainer",
        "aurora_trl.scripts.sft",
        "reasoning",
    ),
    Stage(
        "reflect",
        2,
        "Stage 2: reflective SFT",
        "corrective reflective-style training: a wrong path, 'Wait, let me reconsider.', the corrected path",
        "AuroraSFTTrainer",
        "aurora_trl.scripts.sft",
        "reflective",
    ),
    Stage(
        "grpo",
        3,
        "Stage 3: GRPO",
        "GRPO with format, class and mask-IoU rewards and the rollout mask loss",
        "AuroraGRPOTrainer",
        "aurora_trl.scripts.grpo",
    ),
)
BY_KEY = {stage.key: stage for stage in STAGES}


def supervised_stage(sft_target: str) -> Stage:
    """The supervised stage whose answers are `sft_target` (`direct`, `reasoning` or `reflective`)."""
    for stage in STAGES:
        if stage.sft_target == sft_target:
            return stage
    raise ValueError(f"no stage answers {sft_target!r}; known: {[s.sft_target for s in STAGES if s.sft_target]}")
