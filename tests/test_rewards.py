"""Reward functions as tables: exact values, conversational input, None cases, anti-hacking, TRL signature."""

import pickle

import pytest

from aurora_trl.rewards import REWARD_FUNCS, class_reward, format_reward, iou_reward, reasoning_reward
from aurora_trl.text import format_cot, sft_target
from tests.test_text import REFAVS_CLASSES


GOOD = sft_target(format_cot("two objects.", "a low hum first.", "the first sound.", "hair-dryer"))


def conversation(text):
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD, 1.0),
        (GOOD + "<|im_end|>", 1.0),
        ("  " + GOOD + " <|im_end|>\n<|endoftext|>", 1.0),
        ("It is [SEG].", 1.0),
        ("", 0.0),
        ("It is [SEG]", 0.0),
        ("It is [SEG]. It is [SEG].", 0.0),  # repeating the suffix is not a better answer
        ("[SEG] [SEG] It is [SEG].", 0.0),
        ("It is [SEG]. And then more.", 0.0),
        ("x" * 10_000 + " It is [SEG].", 1.0),
        ("\u202e\u0000🙂 It is [SEG].", 1.0),
    ],
)
def test_format_reward(text, expected):
    assert format_reward([text]) == [expected]
    assert format_reward([conversation(text)]) == [expected]


@pytest.mark.parametrize("class_name", REFAVS_CLASSES)
def test_class_reward_every_refavs_label(class_name):
    right = sft_target(format_cot("i", "a", "r", class_name))
    wrong = sft_target(format_cot("i", "a", "r", "accordion" if class_name != "accordion" else "tuba"))
    assert class_reward([right, wrong, "It is [SEG]."], class_name=[class_name] * 3) == [2.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "text, class_name, expected",
    [
        ('The target is "Emergency car". It is [SEG].', "emergency-car", 2.0),
        ("the TARGET is: the vacuum_cleaner!", "vacuum-cleaner", 2.0),
        ("The target is nothing. It is [SEG].", "null", 2.0),
        ("The target is no object.", "null", 2.0),
        ("The target is nothing.", "guitar", 1.0),
        ("The target is guitar. Wait, let me reconsider. The target is piano.", "piano", 2.0),
        ("The target is guitar. Wait, let me reconsider. The target is piano.", "guitar", 1.0),
        ("The target is .", "guitar", 0.0),
        ("", "guitar", 0.0),
        ("It is [SEG].", None, None),
    ],
)
def test_class_reward_cases(text, class_name, expected):
    assert class_reward([conversation(text)], class_name=[class_name]) == [expected]


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD, 1.0),
        ("Step1: a Step2: b Step3: c Step4: d", 1.0),
        ("Step 1 - a. Step 2 - b. Step 3 - c.", 0.75),
        ("**Step 1** a **Step 2** b", 0.5),
        ("Step 2: b Step 1: a Step 3: c", 0.25),  # only Step 1 is in order; 2 came before it
        ("step 1 of many steps", 0.0),
        ("", 0.0),
    ],
)
def test_reasoning_reward(text, expected):
    assert reasoning_reward([text]) == [expected]


def test_iou_reward_passes_the_trainer_column_through():
    assert iou_reward(["a", "b", "c", "d"], iou=[0.5, None, float("nan"), 1]) == [0.5, None, None, 1.0]
    assert iou_reward(["a", "b"]) == [None, None]


def test_trl_signature_extra_columns_ignored_and_picklable():
    kwargs = {
        "prompts": ["p"],
        "completion_ids": [[1, 2]],
        "trainer_state": object(),
        "uid": ["u"],
        "iou": [0.3],
        "class_name": ["hair-dryer"],
    }
    for name, func in REWARD_FUNCS.items():
        values = func(completions=[GOOD], **kwargs)
        assert len(values) == 1, name
        assert pickle.loads(pickle.dumps(func)) is func
    assert {"format", "class", "iou", "reasoning"} == set(REWARD_FUNCS)
