"""TRL options the AURORA trainers refuse or ignore: refused ones stop the config with the reason, and each stage
script's `--help` marks every one of them."""

import pytest

from aurora_trl.scripts import grpo, sft
from aurora_trl.trainers.grpo_config import AuroraGRPOConfig
from aurora_trl.trainers.sft_config import AuroraSFTConfig
from aurora_trl.trainers.unsupported import IGNORED, REFUSED, unsupported_note


CPU = {"use_cpu": True, "bf16": False, "report_to": "none"}


@pytest.mark.parametrize(
    "config_class, option, reason",
    [
        (AuroraSFTConfig, "packing", "packing would merge clips"),
        (AuroraSFTConfig, "padding_free", "need padded batches"),
        (AuroraGRPOConfig, "use_vllm", r"hidden state at \[SEG\]"),
    ],
)
def test_a_refused_option_stops_the_config_with_its_reason(tmp_path, config_class, option, reason):
    config_class(output_dir=str(tmp_path), **CPU)  # at its default it is fine
    with pytest.raises(ValueError, match=f"{option} is not supported: .*{reason}"):
        config_class(output_dir=str(tmp_path), **CPU, **{option: True})


@pytest.mark.parametrize("script, config_class", [(sft, AuroraSFTConfig), (grpo, AuroraGRPOConfig)])
def test_help_marks_every_refused_and_ignored_option(script, config_class):
    actions = {action.dest: action.help or "" for action in script.make_parser()._actions}
    marked = {dest for dest, text in actions.items() if text.startswith("[")}
    expected = {dest for dest in actions if unsupported_note(config_class, dest)}
    assert marked == expected and expected
    kinds = {unsupported_note(config_class, dest)[0] for dest in expected}
    assert kinds <= {REFUSED, IGNORED}
    for dest in expected:
        assert actions[dest].startswith(f"[{unsupported_note(config_class, dest)[0].upper()} by AURORA's trainer")
    assert "learning_rate" in actions and not actions["learning_rate"].startswith("[")


def test_vllm_options_are_marked_ignored_by_pattern():
    assert unsupported_note(AuroraGRPOConfig, "vllm_server_port")[0] == IGNORED
    assert unsupported_note(AuroraGRPOConfig, "use_vllm")[0] == REFUSED
    assert unsupported_note(AuroraGRPOConfig, "num_generations") is None
