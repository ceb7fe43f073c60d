"""The stage registry: every stage's recipe exists and runs its script, the script's trainer and supervised target are
the registered ones, and the readers (Hub card, quickstart, `aurora-trl train`) take their names from it."""

import importlib
from pathlib import Path

import pytest

from aurora_trl.apps.quickstart import STAGE_RUNS
from aurora_trl.scripts.launch import read_recipe, recipe_script
from aurora_trl.stages import BY_KEY, STAGES, supervised_stage


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_stages_are_numbered_in_order_with_distinct_keys_and_tags():
    assert [stage.number for stage in STAGES] == [0, 1, 2, 3]
    assert len(BY_KEY) == len(STAGES) == len({stage.hub_tag for stage in STAGES})


@pytest.mark.parametrize("folder", [RECIPES, RECIPES / "tiny"], ids=["full", "tiny"])
@pytest.mark.parametrize("stage", STAGES, ids=lambda stage: stage.key)
def test_each_stage_recipe_runs_its_registered_script_and_target(stage, folder):
    recipe = folder / stage.recipe
    assert recipe_script(recipe) == stage.script
    script = importlib.import_module(stage.script)
    assert script.TRAINER.__name__ == stage.trainer
    _, options = read_recipe(recipe)
    assert options.get("sft_target") == stage.sft_target


def test_supervised_targets_name_their_stage():
    assert [supervised_stage(target).key for target in ("direct", "reasoning", "reflective")] == [
        "teacher",
        "sft",
        "reflect",
    ]
    with pytest.raises(ValueError, match="no stage answers 'crst'"):
        supervised_stage("crst")


def test_quickstart_runs_every_stage_in_order():
    assert list(STAGE_RUNS) == [stage.label for stage in STAGES]
