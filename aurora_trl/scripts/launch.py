"""Running recipes: `accelerate launch recipes/sft.yaml`, `aurora-trl train recipes/sft.yaml`, and the glue between.

A recipe is one flat YAML file (open-r1 style) whose keys are its stage script's options (recipes/README.md lists
them), plus two that are not:

- `accelerate`: flow-style settings that `aurora-trl train` turns into `accelerate launch` flags;
- `env`: environment variables set before the options are parsed (e.g. `{"TOKENIZERS_PARALLELISM": "false"}`).

**Why a recipe is also Python.** `accelerate launch FILE` runs `python FILE` on every rank; it has no YAML mode.
Each `key: value` line of a recipe is also a Python annotated statement, and the last line names the stage script
that runs it, e.g. `_run: object = __import__("aurora_trl.scripts.sft").scripts.sft.run_recipe(__file__)`: an
annotated *assignment*, whose value Python evaluates on every version (a bare annotation would not run on Python
>= 3.14, PEP 649). YAML reads that line as the string key `_run`, which is dropped. So a recipe reaches its trainer
in one hop: its last line imports the script, whose `run_recipe` parses the file with the script's own parser and
calls its `main`. The price: strings are quoted, booleans are `True`/`False`, collections are flow-style
(`[..]`, `{..}`), there is no `null` (leave the key out) and keys are Python names. Command-line flags after the
recipe override its values.
"""

import argparse
import ast
import importlib
import os
import sys
from pathlib import Path

import yaml

from aurora_trl.stages import STAGES


RUN_KEY = "_run"
NOT_OPTIONS = (RUN_KEY, "accelerate", "env")
# `accelerate:` settings that name files: relative ones are read from the recipe's folder, so that a recipe launches
# from any folder.
PATH_SETTINGS = ("config_file", "deepspeed_config_file", "mpirun_hostfile")


class RecipeError(ValueError):
    """A recipe that cannot run: no script line, unknown option, unreadable file."""


def recipe_script(path: str | os.PathLike) -> str:
    """The module of the stage script a recipe's last line runs (`aurora_trl.scripts.sft`, say)."""
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError) as err:
        raise RecipeError(f"cannot read recipe {path} as Python: {err}") from None
    for node in tree.body:
        target = getattr(node, "target", None)
        if isinstance(node, ast.AnnAssign) and isinstance(target, ast.Name) and target.id == RUN_KEY:
            for call in ast.walk(node.value):
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "__import__" and call.args:
                    return ast.literal_eval(call.args[0])
    raise RecipeError(
        f"recipe {path} has no last line naming its stage script, such as "
        f'`{RUN_KEY}: object = __import__("aurora_trl.scripts.sft").scripts.sft.run_recipe(__file__)`'
    )


def read_recipe(path: str | os.PathLike) -> tuple[dict, dict]:
    """`(accelerate settings, training options)` of a recipe file; `env` is applied to this process."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise RecipeError(f"cannot read recipe {path}: {err}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} is not a mapping of options")
    if "trainer" in data:
        raise RecipeError(f"recipe {path}: the `trainer` key is gone; its last line names the stage script instead")
    for key, value in (data.get("env") or {}).items():
        os.environ[key] = str(value)
    return data.get("accelerate") or {}, {k: v for k, v in data.items() if k not in NOT_OPTIONS}


def parse_recipe(path: str | os.PathLike, make_parser, argv: list[str] | None = None) -> tuple:
    """A stage script's parsed dataclasses: the recipe's values as defaults, `argv` flags on top."""
    _, options = read_recipe(path)
    parser = make_parser()
    unknown = parser.set_defaults_with_config(**options)
    if unknown:
        names = sorted(flag[2:] for flag in unknown[::2])
        raise RecipeError(f"recipe {path}: unknown option(s) {', '.join(names)}")
    return parser.parse_args_into_dataclasses(args=argv or [], look_for_args_file=False)


def check_process_count() -> None:
    """Stop a run that `accelerate launch` was asked to start on several processes but started as one.

    Without `--multi_gpu` (or a config file whose `distributed_type` starts several), `accelerate launch
    --num_processes N` runs the script once, silently, with the rendezvous address it prepares for N processes set
    and no `WORLD_SIZE`: that combination is what is checked here.
    """
    launched_alone = "ACCELERATE_USE_CPU" in os.environ and "WORLD_SIZE" not in os.environ
    if launched_alone and "MASTER_ADDR" in os.environ:
        raise RuntimeError(
            "accelerate launch was asked for more than one process (--num_processes, or its config file) but started "
            "one. It starts several only with --multi_gpu (on CPUs too: `accelerate launch --multi_gpu "
            "--num_processes 2 RECIPE` gives 2 gloo ranks) or a --config_file whose distributed_type is MULTI_GPU, "
            "DEEPSPEED or FSDP without --cpu; ask for --num_processes 1 to run one process."
        )


def run_recipe(path: str | os.PathLike, main, make_parser, argv: list[str] | None = None):
    """Run a recipe in this process (on each rank under `accelerate launch`) with a stage script's `main` and
    `make_parser`; `argv` flags override it (default: this process's command line). Returns the stage's trainer."""
    check_process_count()
    return main(*parse_recipe(path, make_parser, sys.argv[1:] if argv is None else argv))


def run_script(argv: list[str], main, make_parser):
    """A stage script run as a module: `python -m aurora_trl.scripts.sft --config RECIPE [flags]` (TRL's script
    style), or with flags alone."""
    if "--config" in argv:
        at = argv.index("--config")
        return run_recipe(argv[at + 1], main, make_parser, argv[:at] + argv[at + 2 :])
    check_process_count()  # `run_recipe` checks on the other route
    return main(*make_parser().parse_args_into_dataclasses(args=argv))


def parse_any_recipe(path: str | os.PathLike, argv: list[str] | None = None) -> tuple:
    """`(script module, parsed dataclasses)` of a recipe, with the parser of the script its last line names."""
    script = importlib.import_module(recipe_script(path))
    return script, parse_recipe(path, script.make_parser, argv)


def run_any_recipe(path: str | os.PathLike, argv: list[str] | None = None, callbacks=None):
    """Run a recipe in this process with the stage script its last line names; `argv` flags override it.
    Returns the stage's trainer."""
    script, parsed = parse_any_recipe(path, argv)
    return script.main(*parsed, callbacks=callbacks)


def accelerate_flags(settings: dict, recipe_dir: str | os.PathLike | None = None) -> list[str]:
    """`{"num_processes": 2, "multi_gpu": True}` -> `["--num_processes", "2", "--multi_gpu"]`; a relative file in
    [`PATH_SETTINGS`] is taken from `recipe_dir`."""
    flags = []
    for key, value in settings.items():
        if key in PATH_SETTINGS and recipe_dir is not None and not Path(str(value)).is_absolute():
            value = Path(recipe_dir) / str(value)
        if value is True:
            flags.append(f"--{key}")
        elif value not in (False, None):
            flags += [f"--{key}", str(value)]
    return flags


# ---------------------------------------------------------------------------------------------- `aurora-trl train`
def add_arguments(parser) -> None:
    stages = "; ".join(f"{stage.number} {stage.recipe}" for stage in STAGES)
    parser.add_argument("recipe", help=f"recipe YAML, e.g. recipes/sft.yaml (stages: {stages})")
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="training options overriding the recipe, e.g. --max_steps 10"
    )


def run(args) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser

    settings, _ = read_recipe(args.recipe)
    parse_any_recipe(args.recipe, args.overrides)  # fail here, with a clear message, rather than on every rank
    command = accelerate_flags(settings, Path(args.recipe).parent) + [str(args.recipe), *args.overrides]
    launch_command(launch_command_parser().parse_args(command))
    return 0
