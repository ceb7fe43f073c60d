"""The Stage-2 reflective builder: the joined text, the class filter, the report."""

import json

from aurora_trl.cli import main as cli_main
from aurora_trl.text import REFLECT_TRIGGER, format_cot
from data_prep.reflect import build_reflective


def cot(class_name):
    return format_cot("img", "aud", "ref", class_name)


def test_reflective_text_is_wrong_trigger_correct():
    kept, filtered = build_reflective({"v_1_guitar_1": cot("piano")}, {"v_1_guitar_1": cot("guitar")})
    assert filtered == []
    assert kept == [
        {
            "uid": "v_1_guitar_1",
            "y_wrong": cot("piano"),
            "y_correct": cot("guitar"),
            "reflective": cot("piano") + REFLECT_TRIGGER + cot("guitar"),
        }
    ]
    assert " Wait, let me reconsider. " in kept[0]["reflective"]


def test_filter_keeps_only_corrected_paths_naming_the_ground_truth():
    outputs = {
        "v_1_hair-dryer_1": cot("razor"),
        "v_1_guitar_2": cot("piano"),
        "v_1_guitar_3": cot("piano"),
        "v_1_guitar_4": cot("guitar"),
        "v_1_null_5": cot("dog"),
        "v_1_cat_6": cot("dog"),
    }
    corrected = {
        "v_1_hair-dryer_1": 'Step 4 (answer): The target is "hair-dryer".',  # quoted, hyphenated: kept
        "v_1_guitar_2": cot("violin"),  # wrong class: filtered
        "v_1_guitar_3": "I am not sure.",  # no class: filtered
        "v_1_guitar_4": cot("guitar"),  # already right before: kept unless --only-wrong
        "v_1_null_5": cot("null"),  # null rows: kept
        "orphan_1_cat_1": cot("cat"),  # no Stage-1 output
    }
    kept, filtered = build_reflective(outputs, corrected)
    assert [k["uid"] for k in kept] == ["v_1_hair-dryer_1", "v_1_guitar_4", "v_1_null_5"]
    reasons = {f["uid"]: f["reason"] for f in filtered}
    assert reasons == {
        "v_1_guitar_2": "corrected path names 'violin', ground truth is 'guitar'",
        "v_1_guitar_3": "corrected path names no class ('The target is <class>.' not found)",
        "v_1_cat_6": "no corrected path",
        "orphan_1_cat_1": "no Stage-1 output",
    }
    kept, filtered = build_reflective(outputs, corrected, only_wrong=True)
    assert [k["uid"] for k in kept] == ["v_1_hair-dryer_1", "v_1_null_5"]
    assert len(kept) + len(filtered) == len(set(outputs) | set(corrected))


def test_cli_reads_any_dump_shape_and_prints_counts(tmp_path, capsys):
    (tmp_path / "outputs.jsonl").write_text(
        json.dumps({"uid": "v_1_guitar_1", "output": cot("piano")})
        + "\n{not json\n"
        + json.dumps({"uid": "v_1_guitar_2", "output": cot("drum")})
        + "\n"
    )
    (tmp_path / "corrected.json").write_text(json.dumps({"v_1_guitar_1": cot("guitar"), "v_1_guitar_2": cot("drum")}))
    out = tmp_path / "stage2.jsonl"
    rc = cli_main(
        [
            "data",
            "reflect",
            "--outputs",
            str(tmp_path / "outputs.jsonl"),
            "--corrected",
            str(tmp_path / "corrected.json"),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert "kept 1, filtered 2" in capsys.readouterr().out
    assert [json.loads(x)["uid"] for x in out.read_text().splitlines()] == ["v_1_guitar_1"]
    skipped = [json.loads(x) for x in (tmp_path / "stage2.jsonl.skipped.jsonl").read_text().splitlines()]
    assert {s["uid"] for s in skipped} == {"v_1_guitar_2", None}
    assert any("invalid JSON" in s["reason"] for s in skipped)


def test_cli_unreadable_file_is_a_clear_error(tmp_path, capsys):
    rc = cli_main(
        [
            "data",
            "reflect",
            "--outputs",
            str(tmp_path / "nope"),
            "--corrected",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o.jsonl"),
        ]
    )
    assert rc == 2
    assert "not found" in capsys.readouterr().err


def test_reflective_target_holds_exactly_one_seg():
    """A Stage-1 model's own answer ends with `It is [SEG].` (and a dump may keep it in both paths): the reflective
    target must still hold one `[SEG]`, at its end, or it teaches two and earns format reward 0."""
    from aurora_trl.rewards import format_reward
    from aurora_trl.text import ANSWER_SUFFIX, SEG_TOKEN, sft_target

    y_wrong = f"{cot('piano')} {ANSWER_SUFFIX}"
    kept, _ = build_reflective({"v_1_guitar_1": y_wrong}, {"v_1_guitar_1": f"{cot('guitar')} {ANSWER_SUFFIX}"})
    reflective = kept[0]["reflective"]
    assert reflective == cot("piano") + REFLECT_TRIGGER + cot("guitar")
    assert kept[0]["y_wrong"] == y_wrong  # the pair itself is kept as given
    # the SFT target of a dump's reflective text that still holds the sentences twice
    for text in (reflective, f"{y_wrong}{REFLECT_TRIGGER}{cot('guitar')} {ANSWER_SUFFIX}"):
        target = sft_target(text)
        assert target.count(SEG_TOKEN) == 1 and target.endswith(ANSWER_SUFFIX) and "It is ." not in target
        assert format_reward([target]) == [1.0]
