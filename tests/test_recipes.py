"""Recipes: every one is valid YAML and valid Python, parses with its trainer's own parser, and the CLI overrides it."""

import ast
from pathlib import Path

import pytest

from aurora_trl.launch import RecipeError, accelerate_flags, parse_recipe, read_recipe


RECIPES = sorted(
    p for p in (Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml") if "accelerate" not in p.parts
)
RUN_LINE = '_run: object = __import__("aurora_trl.launch").launch.run_recipe(__file__)'
# Real-model recipes ask for bf16 on a GPU; on this CPU only the keys are checked.
CPU = ["--use_cpu", "True", "--bf16", "False"]


def test_there_are_recipes():
    names = {p.relative_to(p.parents[1]).as_posix() if p.parent.name == "tiny" else p.name for p in RECIPES}
    stages = {"teacher.yaml", "sft.yaml", "reflect.yaml", "grpo.yaml"}
    assert stages | {f"tiny/{name}" for name in stages} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_recipe_is_yaml_and_python_and_parses(recipe):
    text = recipe.read_text()
    ast.parse(text)  # `accelerate launch recipe.yaml` runs it with python
    assert text.rstrip().splitlines()[-1] == RUN_LINE
    trainer, settings, options = read_recipe(recipe)
    assert trainer == ("grpo" if recipe.name == "grpo.yaml" else "sft")
    assert isinstance(settings, dict) and "_run" not in options
    _, (script_args, training_args, model_args) = parse_recipe(recipe, CPU)
    assert model_args.model_name_or_path == options["model_name_or_path"]
    assert training_args.learning_rate == options["learning_rate"]
    if trainer == "sft":
        assert training_args.sft_target in ("direct", "reasoning", "reflective")
    else:
        assert script_args.reward_funcs == ["format", "class", "iou"] and training_args.num_generations == 3


def test_command_line_overrides_the_recipe():
    recipe = next(p for p in RECIPES if p.parent.name == "tiny" and p.name == "sft.yaml")
    _, (script_args, training_args, _) = parse_recipe(
        recipe, ["--learning_rate", "0.5", "--dataset_name", "elsewhere"]
    )
    assert training_args.learning_rate == 0.5 and script_args.dataset_name == "elsewhere"
    assert training_args.max_steps == read_recipe(recipe)[2]["max_steps"]


def test_unknown_recipe_key_is_named(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text('trainer: "sft"\nmodel_name_or_path: "m"\ndataset_name: "d"\nlearnig_rate: 0.1\n' + RUN_LINE)
    with pytest.raises(RecipeError, match="unknown option.*learnig_rate"):
        parse_recipe(recipe, CPU)
    recipe.write_text('trainer: "dpo"\n')
    with pytest.raises(RecipeError, match="unknown trainer 'dpo'"):
        read_recipe(recipe)


def test_accelerate_block_becomes_flags():
    assert accelerate_flags({"num_processes": 2, "multi_gpu": True, "mixed_precision": "no", "cpu": False}) == [
        "--num_processes",
        "2",
        "--multi_gpu",
        "--mixed_precision",
        "no",
    ]
