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
        ("Step 1 (image): a b.<|im_end|> It is [SEG].", 0.0),  # an answer after the end of turn is not the answer
        (GOOD + "<|im_end|> It is [SEG].", 1.0),  # ... and what follows it is ignored
    ],
)
def test_format_reward(text, expected):
    assert format_reward([text]) == [expected]
    assert format_reward([conversation(text)]) == [expected]


SEG_ID, IT, IS, DOT, SEG_SPELLED = 400, 11, 12, 13, [20, 21, 22]  # SEG_SPELLED: "[", "SEG", "]" as sub-tokens


@pytest.mark.parametrize(
    "ids, expected",
    [
        ([IT, IS, SEG_ID, DOT], 1.0),
        ([IT, IS, SEG_ID, DOT, 2], 1.0),  # the end-of-turn id TRL keeps
        ([IT, IS, *SEG_SPELLED, DOT], 0.0),  # "[SEG]" spelled with ordinary sub-tokens: the same text, no mask there
        ([IT, IS, SEG_ID, SEG_ID, DOT], 0.0),
        ([], 0.0),
    ],
)
def test_format_reward_checks_the_real_seg_token(ids, expected):
    text = "The target is guitar. It is [SEG]."
    assert format_reward([text], completion_ids=[ids], seg_token_id=[SEG_ID]) == [expected]
    assert format_reward([text], completion_ids=[ids], seg_token_id=SEG_ID) == [expected]  # one id for all
    assert format_reward([text], completion_ids=[ids]) == [1.0]  # no id to check against: the text alone
    with pytest.raises(ValueError, match="completion_ids"):
        format_reward([text, text], completion_ids=[ids], seg_token_id=SEG_ID)


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
        ("The target is the.", "guitar", 0.0),  # an article names no class
        ("The target is it. It is [SEG].", "guitar", 0.0),
        ("The target is the object.", "guitar", 0.0),
        ("The target is guitar guitar guitar.", "guitar", 0.0),  # a repeated word is no class name
        ("The target is the red guitar on the left.", "guitar", 0.0),  # a sentence, not a class
        ("The target is banana.", "guitar", 1.0),  # a class, the wrong one
        ("The target is piano.<|im_end|> The target is guitar.", "guitar", 1.0),  # after the end of turn: ignored
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
        ("Step1: a b Step2: c d Step3: e f Step4: g h", 1.0),
        ("Step 1 - a b. Step 2 - c d. Step 3 - e f.", 0.75),
        ("**Step 1** a b **Step 2** c d", 0.5),
        ("Step 2: b c Step 1: a b Step 3: c d", 0.0),  # out of order from the start
        ("step 1 of many steps", 0.0),
        ("", 0.0),
        ("Step 1: Step 2: Step 3: Step 4:", 0.0),  # empty headers
        ("Step 1 (image): Step 2 (audio): Step 3 (reference): Step 4 (answer):", 0.0),
        ("Step 1: a Step 2: b Step 3: c Step 4: d It is [SEG].", 0.0),  # one word each
        ("Step 1 (image): a b. Step 2 (audio): c d. Step 2 (audio): c d. Step 3 (reference): e f.", 0.5),  # a loop
        (GOOD + " " + GOOD, 1.0),  # stops at the repeated Step 1 after four full steps
        ("Step 1 (image): a b. Wait, let me reconsider. " + GOOD, 1.0),  # the path after the trigger counts
        (GOOD + " Wait, let me reconsider. Step 1 (image): a b.", 0.25),  # ... also when it is worse
        ("Step 1: a b <|im_end|> Step 2: c d Step 3: e f Step 4: g h", 0.25),  # after the end of turn: ignored
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
