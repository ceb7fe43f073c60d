"""Small builders shared by the trainer tests (fixtures live in conftest.py)."""

from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.trainers.sft_config import AuroraSFTConfig


def sft_config(output_dir, **overrides) -> AuroraSFTConfig:
    """A CPU AuroraSFTConfig for a few steps of the tiny model; `overrides` replace any default."""
    values = dict(
        output_dir=str(output_dir),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        gradient_checkpointing=False,
        seed=0,
    )
    values.update(overrides)
    return AuroraSFTConfig(**values)


def tiny_policy_model(path, lora: bool = True):
    """`(model, processor)` from a tiny AURORA folder, with AURORA's training policy applied."""
    model = AuroraForSegmentation.from_pretrained(path)
    policy = TrainingPolicy(use_lora=lora, train_llm=not lora)
    return apply_training_policy(model, policy), load_processor(path)
