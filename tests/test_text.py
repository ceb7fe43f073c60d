"""The shared text conventions: prompt, answer grammar, class parser (every Ref-AVS label), CoT steps."""

import pytest

from aurora_trl.text import (
    ANSWER_SUFFIX,
    SYSTEM_PROMPT,
    build_prompt,
    class_from_uid,
    format_cot,
    has_canonical_steps,
    media_id_from_uid,
    names_class,
    parse_answer_class,
    reflective_path,
    sft_target,
    step_header_offsets,
    teacher_target,
)


# The 52 labels of Ref-AVS's metadata.csv, hyphenated ones included.
REFAVS_CLASSES = (
    "accordion airplane baby bass boat boy car cat cello chair clarinet clock couch dog drum emergency-car flute girl "
    "guitar gun guzheng hair-dryer handpan harmonica harp helicopter keyboard leopard lion man marimba motorcycle "
    "mower null piano pig pipa razor saw saxophone sheep sitar tabla table tiger truck tuba ukulele vacuum-cleaner "
    "violin wolf woman"
).split()


def test_class_list_is_complete():
    assert len(REFAVS_CLASSES) == 52


@pytest.mark.parametrize("class_name", REFAVS_CLASSES)
def test_parse_answer_class_reads_every_refavs_label(class_name):
    plain = format_cot("i", "a", "r", class_name)
    assert parse_answer_class(plain) == class_name
    assert parse_answer_class(sft_target(plain)) == class_name
    # AURORA's figure quotes the name and capitalises freely; its own regex fails on both and on hyphens.
    assert parse_answer_class(f'So... The target is "{class_name}".') == class_name
    assert parse_answer_class(f"THE TARGET IS THE {class_name.upper()}.") == class_name
    assert class_from_uid(f"-abc_DEF_1000_11000_{class_name}_3") == class_name


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The target is emergency car.", "emergency-car"),
        ("the TARGET is: The Vacuum_Cleaner!", "vacuum-cleaner"),
        ("The target is a dog, barking.", "dog"),
        ("The target is “man”.", "man"),
        ("The target is **guitar**. It is [SEG].", "guitar"),
        ("The target is an ukulele [SEG].", "ukulele"),
        ("The target is .", None),
    ],
)
def test_parse_answer_class_normalises_the_phrase(text, expected):
    assert parse_answer_class(text) == expected


def test_names_class_accepts_null_synonyms_only_for_null():
    for answer in ("null", "none", "nothing", "no object", "No-Object"):
        assert names_class(parse_answer_class(f"The target is {answer}."), "null")
        assert not names_class(parse_answer_class(f"The target is {answer}."), "guitar")
    assert names_class("emergency-car", "emergency-car") and not names_class(None, "null")


def test_parse_answer_class_takes_the_last_answer_of_a_reflective_path():
    text = reflective_path(format_cot("i", "a", "r", "guitar"), format_cot("i", "a", "r", "hair-dryer"))
    assert parse_answer_class(text) == "hair-dryer"
    assert parse_answer_class("no answer here") is None
    assert parse_answer_class("") is None


def test_uid_helpers_on_null_rows():
    uid = "null_c--cLOg0sQ0Zo_420000_430000_null_1"
    assert class_from_uid(uid) == "null"
    assert media_id_from_uid(uid) == "null_c--cLOg0sQ0Zo_420000_430000"
    with pytest.raises(ValueError, match="does not end"):
        class_from_uid("noclass")


def test_prompt_has_system_audio_frames_and_the_expression():
    prompt = build_prompt("  The first object to make a sound. ")
    assert prompt[0] == {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}
    content = prompt[1]["content"]
    assert [b["type"] for b in content] == ["audio"] + ["image"] * 10 + ["text"]
    assert content[-1]["text"] == (
        "The reference is: The first object to make a sound. Please segment the corresponding object in the images."
    )
    assert [b["type"] for b in build_prompt("x", num_frames=3, with_audio=False)[1]["content"]] == ["image"] * 3 + [
        "text"
    ]


def test_answer_grammar():
    assert sft_target(" reasoning. ") == f"reasoning. {ANSWER_SUFFIX}"
    assert teacher_target("hair-dryer") == "It is hair-dryer [SEG]."


def test_cot_steps():
    text = format_cot("two objects.", "a low hum.", "the first sound.", "guitar")
    assert has_canonical_steps(text)
    assert text == (
        "Step 1 (image): two objects. Step 2 (audio): a low hum. Step 3 (reference): the first sound. "
        "Step 4 (answer): The target is guitar."
    )
    assert not has_canonical_steps("Step 2 (audio): x Step 1 (image): y Step 3 (reference): z Step 4 (answer): w")
    assert not has_canonical_steps(text + " Step 4 (answer): again")


def test_step_header_offsets_find_each_canonical_header():
    path = format_cot("red drum left.", "drum low from 2.", "first sound, the red drum left.", "drum")
    offsets = step_header_offsets(path)
    assert sorted(offsets) == [1, 2, 3, 4]
    for step, at in offsets.items():
        assert path[at:].startswith(f"Step {step} (")
    assert step_header_offsets("Step 1: no canonical header. It is [SEG].") == {}
