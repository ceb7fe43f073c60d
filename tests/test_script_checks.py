"""What a stage script refuses before training: a data set whose stored prompts are not the ones this version builds,
and base-only options (SAM checkpoint, SAM size) given with a model that is already AURORA's."""

import pytest
from datasets import load_from_disk
from trl import ModelConfig

from aurora_trl.scripts.common import AuroraScriptArguments, check_prompts, load_model


def test_stored_prompts_must_be_the_built_ones(synth_dataset):
    train = load_from_disk(synth_dataset)["train"]
    check_prompts(train, "train")  # a data set built by this version passes
    first = train[0]["prompt"]
    stale_prompt = [{**first[0], "content": [{"type": "text", "text": "You are an older system prompt."}]}, *first[1:]]
    stale = train.map(lambda row, index: {"prompt": stale_prompt} if index == 1 else {}, with_indices=True)
    with pytest.raises(ValueError, match=f"1 of {len(train)} rows store another prompt.*{train[1]['uid']}"):
        check_prompts(stale, "train")
    check_prompts(train.remove_columns("prompt"), "train")  # no stored prompt: nothing to disagree with


@pytest.mark.parametrize(
    "options, named",
    [({"sam_checkpoint": "sam_vit_h.pth"}, "sam_checkpoint"), ({"sam_image_size": 1024}, "sam_image_size 1024")],
)
def test_base_only_options_with_an_aurora_checkpoint_are_refused(tiny_aurora_dir, options, named):
    script_args = AuroraScriptArguments(dataset_name="unused", **options)
    with pytest.raises(ValueError, match=f"already an AURORA model, so {named}.*cannot take effect"):
        load_model(script_args, ModelConfig(model_name_or_path=str(tiny_aurora_dir)))


def test_the_checkpoint_own_sam_size_is_accepted(tiny_aurora_dir):
    model, _ = load_model(
        AuroraScriptArguments(dataset_name="unused"), ModelConfig(model_name_or_path=str(tiny_aurora_dir))
    )
    same = AuroraScriptArguments(dataset_name="unused", sam_image_size=model.config.sam_image_size)
    assert load_model(same, ModelConfig(model_name_or_path=str(tiny_aurora_dir)))[0].config.sam_image_size == (
        model.config.sam_image_size
    )
