"""Running recipes: `accelerate launch recipes/sft.yaml`, `aurora-trl train recipes/sft.yaml`, and the glue between.

A recipe is one flat YAML file (open-r1 style). Three keys are not training options:

- `trainer`: which stage script runs it (`sft`; more stages register in `STAGES`);
- `accelerate`: flow-style settings turned into `accelerate launch` flags by `aurora-trl train`;
- `_run`: the last line, which makes the file a Python program as well (below).

**Why a recipe is also Python.** `accelerate launch FILE` runs `python FILE` on every rank; it has no YAML mode.
Each `key: value` line of a recipe is also a Python annotated statement, and the last line,
`_run: object = __import__("aurora_trl.launch").launch.run_recipe(__file__)`, is an annotated *assignment*,
whose value Python evaluates on every version (a bare annotation would not run on Python >= 3.14, PEP 649). YAML
reads that line as the string key `_run`, which is dropped. The price: strings are quoted, booleans are
`True`/`False`, collections are flow-style (`[..]`, `{..}`), there is no `null` (leave the key out) and keys are
Python names. Command-line flags after the recipe override its values.
"""

import argparse
import importlib
import os
import sys
from pathlib import Path

import yaml


STAGES = {"sft": "aurora_trl.sft", "grpo": "aurora_trl.grpo"}
RESERVED_KEYS = ("_run", "trainer", "accelerate")


class RecipeError(ValueError):
    """A recipe that cannot run: unknown trainer, unknown option, unreadable file."""


def read_recipe(path: str | os.PathLike) -> tuple[str, dict, dict]:
    """`(trainer, accelerate settings, training options)` of a recipe file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise RecipeError(f"cannot read recipe {path}: {err}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} is not a mapping of options")
    data.pop("_run", None)
    trainer = data.pop("trainer", "sft")
    if trainer not in STAGES:
        raise RecipeError(f"recipe {path}: unknown trainer {trainer!r}; known: {', '.join(STAGES)}")
    accelerate = data.pop("accelerate", None) or {}
    return trainer, accelerate, data


def parse_recipe(path: str | os.PathLike, argv: list[str] | None = None) -> tuple[str, tuple]:
    """The stage name and its parsed dataclasses: recipe values as defaults, `argv` flags on top."""
    trainer, _, options = read_recipe(path)
    module = importlib.import_module(STAGES[trainer])
    parser = module.make_parser()
    for key, value in (options.pop("env", None) or {}).items():
        os.environ[key] = str(value)
    unknown = parser.set_defaults_with_config(**options)
    if unknown:
        names = sorted(flag[2:] for flag in unknown[::2])
        raise RecipeError(f"recipe {path}: unknown option(s) {', '.join(names)}")
    return trainer, parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


def run_recipe(path: str | os.PathLike, argv: list[str] | None = None):
    """Run a recipe in this process (on each rank under `accelerate launch`); returns the stage's trainer."""
    trainer, args = parse_recipe(path, sys.argv[1:] if argv is None else argv)
    return importlib.import_module(STAGES[trainer]).main(*args)


def script_main(argv: list[str]):
    """`python -m aurora_trl.sft|grpo --config RECIPE [flags]` (TRL's script style) or flags alone."""
    if "--config" in argv:
        at = argv.index("--config")
        return run_recipe(argv[at + 1], argv[:at] + argv[at + 2 :])
    module = sys.modules["__main__"]
    return module.main(*module.make_parser().parse_args_into_dataclasses(args=argv))


def accelerate_flags(settings: dict) -> list[str]:
    """`{"num_processes": 2, "multi_gpu": True}` -> `["--num_processes", "2", "--multi_gpu"]`."""
    flags = []
    for key, value in settings.items():
        if value is True:
            flags.append(f"--{key}")
        elif value not in (False, None):
            flags += [f"--{key}", str(value)]
    return flags


# ---------------------------------------------------------------------------------------------- `aurora-trl train`
def add_arguments(parser) -> None:
    parser.add_argument("recipe", help="recipe YAML (e.g. recipes/sft.yaml)")
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="training options overriding the recipe, e.g. --max_steps 10"
    )


def run(args) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser

    _, settings, _ = read_recipe(args.recipe)
    parse_recipe(args.recipe, args.overrides)  # fail here, with a clear message, rather than on every rank
    command = accelerate_flags(settings) + ["-m", "aurora_trl.launch", str(args.recipe), *args.overrides]
    launch_command(launch_command_parser().parse_args(command))
    return 0


if __name__ == "__main__":
    run_recipe(sys.argv[1], sys.argv[2:])
