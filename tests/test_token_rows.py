"""Only the `[SEG]` rows of the embeddings and the LM head train: the trainable count, what a few steps change, what
the merged model carries, and a base without a spare row resized once."""

from collections import Counter

import torch
from datasets import load_from_disk
from trl import ModelConfig

from aurora_trl.modeling import AuroraForSegmentation, load_processor
from aurora_trl.modeling.policy import TrainingPolicy, apply_training_policy
from aurora_trl.scripts.common import AuroraScriptArguments, load_model, save_merged, training_policy
from aurora_trl.tiny import TINY_SAM, _set_generation_ids, tiny_thinker_config
from aurora_trl.tiny_processor import build_tiny_processor
from aurora_trl.trainers.sft_trainer import AuroraSFTTrainer
from tests.helpers import sft_config


EMBED = "model.language_model.embed_tokens.weight"
HEAD = "lm_head.weight"


def trainable_by_group(model) -> Counter:
    groups = Counter()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            group = next(
                (g for g, part in (("LoRA", "lora_"), ("rows", "trainable_tokens_delta"), ("projector", "seg_projector"),
                                   ("decoder", "mask_decoder")) if part in name),
                name,
            )  # fmt: skip
            groups[group] += parameter.numel()
    return groups


def test_trainable_parameters_of_the_tiny_model_are_pinned(tiny_aurora):
    model, _ = tiny_aurora
    hidden = model.config.get_text_config().hidden_size
    groups = trainable_by_group(apply_training_policy(model, TrainingPolicy()))
    # LoRA r 8 on q (64 -> 64) and v (64 -> 32) of 2 layers; the projector 64 -> 64 -> 256; the mask decoder's parts
    # that decoding uses; one row of 64 in each of the two matrices, not 2 x 448 x 64 (the old full copies: 57,344).
    assert groups == {"LoRA": 3584, "rows": 2 * hidden, "projector": 20800, "decoder": 908992}
    assert sum(groups.values()) == 933504


def test_script_flags_keep_the_mask_decoder_and_the_projector_as_loaded(tiny_aurora):
    from trl import TrlParser

    script_args, model_args = TrlParser((AuroraScriptArguments, ModelConfig)).parse_args_and_config(
        ["--dataset_name", "d", "--use_peft", "--train_mask_decoder", "False", "--train_projector", "False"]
    )
    policy = training_policy(
        model_args,
        token_rows=script_args.token_rows,
        train_mask_decoder=script_args.train_mask_decoder,
        train_projector=script_args.train_projector,
    )
    model, _ = tiny_aurora
    groups = trainable_by_group(apply_training_policy(model, policy))
    assert set(groups) == {"LoRA", "rows"}  # no "projector", no "decoder"


def test_steps_change_only_the_seg_rows_and_the_merged_model_carries_them(tiny_aurora_dir, synth_dataset, tmp_path):
    start = AuroraForSegmentation.from_pretrained(tiny_aurora_dir).state_dict()
    model = apply_training_policy(AuroraForSegmentation.from_pretrained(tiny_aurora_dir), TrainingPolicy())
    seg = model.get_base_model().config.seg_token_id
    processor = load_processor(tiny_aurora_dir)
    trainer = AuroraSFTTrainer(
        model=model,
        args=sft_config(tmp_path / "out", max_steps=2, distill_loss_weight=0),
        train_dataset=load_from_disk(str(synth_dataset))["train"],
        processing_class=processor,
    )
    trainer.train()
    save_merged(trainer.model, processor, str(tmp_path / "merged"), "sft")
    merged = AuroraForSegmentation.from_pretrained(tmp_path / "merged").state_dict()
    rows = {n: p for n, p in trainer.model.named_parameters() if "trainable_tokens_delta" in n}
    for key, row in ((EMBED, "embed_tokens"), (HEAD, "lm_head")):
        changed = (merged[key] != start[key]).any(dim=1).nonzero().flatten().tolist()
        assert changed == [seg], key
        trained = next(p for n, p in rows.items() if f".{row}." in n)
        torch.testing.assert_close(merged[key][seg], trained.detach()[0], rtol=0, atol=0)


def test_a_base_without_a_spare_row_is_resized_once(tmp_path):
    """A base checkpoint whose embedding has exactly one row per token: adding [SEG] resizes it (to a multiple of
    64) when the model is built, and the next stage, loading the AURORA checkpoint, does not resize again."""
    processor = build_tiny_processor(with_seg=False)
    config = tiny_thinker_config(processor.tokenizer)
    config.text_config.vocab_size = len(processor.tokenizer)  # no spare row
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    torch.manual_seed(0)
    base = Qwen2_5OmniThinkerForConditionalGeneration(config)
    _set_generation_ids(base, processor.tokenizer)
    base.save_pretrained(tmp_path / "base")
    processor.save_pretrained(tmp_path / "base")

    model, built_processor = AuroraForSegmentation.from_base(
        tmp_path / "base",
        config_overrides={"sam_image_size": 64, **TINY_SAM},  # a small SAM, not ViT-H
    )
    rows = model.get_input_embeddings().num_embeddings
    seg = model.config.seg_token_id
    assert seg == len(processor.tokenizer) and rows == 64 * -(-(seg + 1) // 64) and rows > seg
    assert model.get_output_embeddings().weight.shape[0] == rows
    peft_model = apply_training_policy(model, TrainingPolicy())
    save_merged(peft_model, built_processor, str(tmp_path / "stage0"), "teacher")

    script = AuroraScriptArguments(dataset_name="unused")
    again, _ = load_model(script, ModelConfig(model_name_or_path=str(tmp_path / "stage0")))  # as the next stage
    assert again.get_input_embeddings().num_embeddings == rows and again.config.seg_token_id == seg
    assert torch.equal(again.get_input_embeddings().weight, model.get_input_embeddings().weight)
