"""The `aurora-trl` command line.

    aurora-trl data synth   --out DIR [--clips N] [--seed S] [--size PX]    synthetic Ref-AVS clips
    aurora-trl data build   --refavs-root DIR --out DIR [--stage1 F] ...    Hugging Face dataset from Ref-AVS
    aurora-trl data reflect --outputs F --corrected F --out F ...           Stage-2 reflective targets
    aurora-trl data cot     --model PATH --data DIR --out FILE              Stage-1 CoT paths with an Omni model
    aurora-trl tiny         --out DIR                                       tiny random model, built offline
    aurora-trl train        RECIPE [--option value ...]                     a training recipe, through accelerate
    aurora-trl eval         --model DIR --data DIR --out DIR                the benchmark's numbers, report, overlays
    aurora-trl quickstart   [--out DIR] [--steps-scale F]                  every stage on the tiny model, with a table
    aurora-trl predict      --model DIR --frames DIR --expression T --out D   one clip: reasoning, masks, overlays
    aurora-trl demo         --model DIR [--host H] [--port P] [--share]     a web page: upload a clip, see its masks

Each sub-command's parser is declared by the module that implements it (`add_arguments(parser)` + `run(args)`),
and that module is imported only when its command runs, so `aurora-trl --help` stays fast.
"""

import argparse
import importlib
import sys


# command path -> (module, one-line help). The module provides `add_arguments(parser)` and `run(args) -> int`.
COMMANDS = {
    ("data", "synth"): ("data_prep.synth", "write a synthetic data set in the Ref-AVS (or AVSBench) layout"),
    ("data", "build"): ("data_prep.build", "build a Hugging Face DatasetDict from a Ref-AVS folder and dumps"),
    ("data", "build-avsbench"): ("data_prep.avsbench", "build a Hugging Face DatasetDict from an AVSBench subset"),
    ("data", "reflect"): ("data_prep.reflect", "build Stage-2 reflective targets and filter them by class"),
    ("data", "cot"): ("aurora_trl.apps.cot", "generate Stage-1 CoT paths with a Qwen2.5-Omni thinker (resumable)"),
    ("tiny",): ("aurora_trl.tiny", "write a tiny random AURORA model, processor and tokenizer"),
    ("train",): (
        "aurora_trl.scripts.launch",
        "run a training recipe with accelerate (its `accelerate:` block sets the flags)",
    ),
    ("eval",): ("aurora_trl.apps.evaluate", "Ref-AVS metrics (J, F, null S) of a model, with a report and overlays"),
    ("quickstart",): (
        "aurora_trl.apps.quickstart",
        "synthetic data -> 4 tiny stages -> eval table and curves, on a CPU",
    ),
    ("predict",): ("aurora_trl.apps.predict", "reasoning, masks and overlays for one clip (frames or a video, audio)"),
    ("demo",): ("aurora_trl.apps.demo", "serve a web page (Gradio) to segment an uploaded clip with a model"),
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aurora-trl", description=__doc__.split("\n\n")[0])
    groups = {(): parser.add_subparsers(dest="command", required=True, metavar="COMMAND")}
    for path, (_, help_text) in COMMANDS.items():
        for depth in range(1, len(path)):
            prefix = path[:depth]
            if prefix not in groups:
                sub = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} commands")
                groups[prefix] = sub.add_subparsers(dest="_".join(prefix) + "_command", required=True)
        groups[path[:-1]].add_parser(path[-1], help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = next((p for p in COMMANDS if tuple(argv[: len(p)]) == p), None)
    if path is None:
        make_parser().parse_args(argv)  # prints the help or the usage error, and exits
        return 2
    module_name, help_text = COMMANDS[path]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog="aurora-trl " + " ".join(path), description=help_text)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv[len(path) :])) or 0)


if __name__ == "__main__":
    sys.exit(main())
