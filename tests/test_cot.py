"""CoT generation with a real (tiny, random) Qwen2.5-Omni thinker: one line per row, resumable."""

import json

import pytest

from aurora_trl.apps.cot import judge_cot
from aurora_trl.cli import main as cli_main
from aurora_trl.text import cot_generation_prompt, format_cot
from data_prep.build import build_dataset


@pytest.fixture(scope="module")
def built_data(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cot_data")
    build_dataset(synth_root, out)
    return out


def run_cot(model_dir, data_dir, out, limit):
    args = ["data", "cot", "--model", str(model_dir), "--data", str(data_dir), "--out", str(out)]
    return cli_main(args + ["--split", "val", "--limit", str(limit), "--max-new-tokens", "6", "--batch-size", "2"])


def test_cot_writes_one_line_per_row_and_resumes(tiny_base_dir, built_data, tmp_path, capsys):
    out = tmp_path / "cot.jsonl"
    assert run_cot(tiny_base_dir, built_data, out, limit=3) == 0
    first = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(first) == 3 and len({r["uid"] for r in first}) == 3
    # a random tiny model writes no canonical CoT: every line is kept, as rejected with its reason
    assert all(r["reason"] == "not the four canonical steps" and "rejected" in r for r in first)

    # a run killed while writing leaves a cut-off line: it is dropped and its row generated again
    out.write_text(out.read_text()[:-10])
    capsys.readouterr()
    assert run_cot(tiny_base_dir, built_data, out, limit=5) == 0
    assert "5 rows, 2 already in" in capsys.readouterr().out
    second = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["uid"] for r in second[:2]] == [r["uid"] for r in first[:2]]
    assert len(second) == 5 and len({r["uid"] for r in second}) == 5

    assert run_cot(tiny_base_dir, built_data, out, limit=5) == 0
    assert "0 to generate" in capsys.readouterr().out


def test_cot_prompt_and_judge():
    prompt = cot_generation_prompt("The first object to make a sound.", "hair-dryer")
    text = prompt[1]["content"][-1]["text"]
    assert "The object it refers to is the hair-dryer." in text and text.endswith("The target is hair-dryer.")
    assert "Nothing in the clip matches it." in cot_generation_prompt("x", "null")[1]["content"][-1]["text"]
    assert judge_cot(format_cot("a", "b", "c", "hair-dryer"), "hair-dryer") is None
    assert (
        judge_cot(format_cot("a", "b", "c", "razor"), "hair-dryer")
        == "answer names 'razor', ground truth is 'hair-dryer'"
    )
    assert judge_cot("The target is hair-dryer.", "hair-dryer") == "not the four canonical steps"


def test_cot_missing_split_is_a_clear_error(built_data, tmp_path, capsys):
    rc = cli_main(
        [
            "data",
            "cot",
            "--model",
            "unused",
            "--data",
            str(built_data),
            "--out",
            str(tmp_path / "o"),
            "--split",
            "nope",
        ]
    )
    assert rc == 2 and "cannot read split 'nope'" in capsys.readouterr().err
