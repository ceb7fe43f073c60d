"""The `aurora-trl` console script: command table, help, and a real sub-command run through the entry point."""

import shutil
import subprocess
import sys

import pytest

from aurora_trl.cli import COMMANDS, main


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert {"data", "tiny"} <= set(
        capsys.readouterr().out.replace(",", " ").replace("{", " ").replace("}", " ").split()
    )


@pytest.mark.parametrize("path", list(COMMANDS))
def test_each_command_declares_its_options(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: aurora-trl {' '.join(path)}" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "nope"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_console_script_runs_synth(tmp_path):
    script = shutil.which("aurora-trl") or [sys.executable, "-m", "aurora_trl.cli"]
    command = [script] if isinstance(script, str) else script
    result = subprocess.run(
        command + ["data", "synth", "--out", str(tmp_path / "s"), "--clips", "5", "--size", "32"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "from 5 clips" in result.stdout
    assert (tmp_path / "s" / "metadata.csv").is_file()
