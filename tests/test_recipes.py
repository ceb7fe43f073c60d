"""Recipes: every one is valid YAML and valid Python, parses with its trainer's own parser, and the CLI overrides it."""

import ast
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from aurora_trl.scripts import grpo, sft
from aurora_trl.scripts.launch import RecipeError, accelerate_flags, parse_any_recipe, read_recipe, recipe_script
from aurora_trl.stages import BY_KEY


RECIPES = sorted(
    p for p in (Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml") if "accelerate" not in p.parts
)


def run_line(script: str) -> str:
    return f'_run: object = __import__("{script}").{script.removeprefix("aurora_trl.")}.run_recipe(__file__)'


# Real-model recipes ask for bf16 on a GPU; on this CPU only the keys are checked.
CPU = ["--use_cpu", "True", "--bf16", "False"]
# What a recipe outside the stage registry is checked against: the supervised script, direct answers.
FINE_TUNING = SimpleNamespace(script="aurora_trl.scripts.sft", sft_target="direct")


def test_there_are_recipes():
    names = {p.relative_to(p.parents[1]).as_posix() if p.parent.name == "tiny" else p.name for p in RECIPES}
    stages = {"teacher.yaml", "sft.yaml", "reflect.yaml", "grpo.yaml"}
    assert stages | {f"tiny/{name}" for name in stages} <= names
    assert {"avsbench.yaml", "tiny/avsbench.yaml"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_recipe_is_yaml_and_python_and_parses(recipe):
    text = recipe.read_text()
    ast.parse(text)  # `accelerate launch recipe.yaml` runs it with python
    # A recipe named after a stage trains that stage; the others (AVSBench fine-tuning) are supervised runs.
    stage = BY_KEY.get(recipe.stem, FINE_TUNING)
    assert text.rstrip().splitlines()[-1] == run_line(stage.script)
    assert recipe_script(recipe) == stage.script
    settings, options = read_recipe(recipe)
    assert isinstance(settings, dict) and "_run" not in options
    script, (script_args, training_args, model_args) = parse_any_recipe(recipe, CPU)
    assert script.__name__ == stage.script
    assert model_args.model_name_or_path == options["model_name_or_path"]
    assert training_args.learning_rate == options["learning_rate"]
    if stage.sft_target:
        assert training_args.sft_target == stage.sft_target
    else:
        assert script_args.reward_funcs == ["format", "class", "iou"] and training_args.num_generations == 3


def test_command_line_overrides_the_recipe():
    recipe = next(p for p in RECIPES if p.parent.name == "tiny" and p.name == "sft.yaml")
    _, (script_args, training_args, _) = parse_any_recipe(
        recipe, ["--learning_rate", "0.5", "--dataset_name", "elsewhere"]
    )
    assert training_args.learning_rate == 0.5 and script_args.dataset_name == "elsewhere"
    assert training_args.max_steps == read_recipe(recipe)[1]["max_steps"]


def test_unknown_recipe_key_is_named(tmp_path):
    recipe = tmp_path / "bad.yaml"
    line = run_line("aurora_trl.scripts.sft")
    recipe.write_text('model_name_or_path: "m"\ndataset_name: "d"\nlearnig_rate: 0.1\n' + line)
    with pytest.raises(RecipeError, match="unknown option.*learnig_rate"):
        parse_any_recipe(recipe, CPU)


def test_a_recipe_without_its_script_line_or_with_the_old_trainer_key_is_refused(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text('model_name_or_path: "m"\n')
    with pytest.raises(RecipeError, match="no last line naming its stage script"):
        parse_any_recipe(recipe)
    recipe.write_text('trainer: "sft"\nmodel_name_or_path: "m"\n' + run_line("aurora_trl.scripts.sft"))
    with pytest.raises(RecipeError, match="`trainer` key is gone"):
        read_recipe(recipe)


def test_env_key_is_set_before_parsing(tmp_path, monkeypatch):
    monkeypatch.delenv("AURORA_RECIPE_TEST", raising=False)
    recipe = tmp_path / "env.yaml"
    recipe.write_text(
        'env: {"AURORA_RECIPE_TEST": "on"}\nmodel_name_or_path: "m"\n' + run_line("aurora_trl.scripts.sft")
    )
    settings, options = read_recipe(recipe)
    assert os.environ["AURORA_RECIPE_TEST"] == "on" and "env" not in options and settings == {}


def test_each_script_module_is_the_one_its_recipes_name():
    assert {BY_KEY[key].script for key in ("teacher", "sft", "reflect")} == {sft.__name__}
    assert BY_KEY["grpo"].script == grpo.__name__


def test_accelerate_files_are_read_from_the_recipe_folder(tmp_path):
    settings = {"config_file": "accelerate/ddp.yaml", "num_processes": 2}
    assert accelerate_flags(settings, tmp_path / "recipes") == [
        "--config_file",
        str(tmp_path / "recipes" / "accelerate" / "ddp.yaml"),
        "--num_processes",
        "2",
    ]
    assert accelerate_flags({"config_file": "/abs/ddp.yaml"}, tmp_path) == ["--config_file", "/abs/ddp.yaml"]
    for recipe in RECIPES:  # every shipped recipe's accelerate files exist, wherever it is launched from
        settings, _ = read_recipe(recipe)
        flags = accelerate_flags(settings, recipe.parent)
        files = [Path(flags[i + 1]) for i, flag in enumerate(flags) if flag == "--config_file"]
        assert all(file.is_file() for file in files), (recipe, files)


def test_accelerate_block_becomes_flags():
    assert accelerate_flags({"num_processes": 2, "multi_gpu": True, "mixed_precision": "no", "cpu": False}) == [
        "--num_processes",
        "2",
        "--multi_gpu",
        "--mixed_precision",
        "no",
    ]
