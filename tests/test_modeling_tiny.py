"""The tiny offline builders: processor, base thinker checkpoint, and the `aurora-trl tiny` command."""

import numpy as np
import torch
from PIL import Image
from transformers import Qwen2_5OmniThinkerForConditionalGeneration

from aurora_trl.cli import main as cli_main
from aurora_trl.modeling import AuroraForSegmentation
from aurora_trl.modeling.processing import OmniProcessorNoVideo, load_processor
from aurora_trl.text import SEG_TOKEN, build_prompt
from aurora_trl.tiny import build_tiny_processor


def _inputs(processor, num_frames=10, seconds=2.0):
    text = processor.apply_chat_template(build_prompt("the dog", num_frames=num_frames), add_generation_prompt=True)
    frames = [Image.new("RGB", (64, 48), (30 * i, 100, 200)) for i in range(num_frames)]
    audio = np.sin(np.linspace(0, 2000, int(16000 * seconds))).astype("float32")
    return processor(text=[text], images=frames, audio=[audio], return_tensors="pt")


def test_tiny_processor_renders_markers_and_expands_placeholders():
    processor = build_tiny_processor(with_seg=True)
    tok = processor.tokenizer
    text = processor.apply_chat_template(build_prompt("the dog", num_frames=2), add_generation_prompt=True)
    # Every placeholder directly follows its bos marker (otherwise the thinker's 3-D positions go wrong).
    assert text.count("<|vision_bos|><|IMAGE|><|vision_eos|>") == 2
    assert text.count("<|audio_bos|><|AUDIO|><|audio_eos|>") == 1
    assert text.endswith("<|im_start|>assistant\n")
    # [SEG] is one normal token that survives skip_special_tokens (TRL decodes completions that way).
    seg_ids = tok(f"It is {SEG_TOKEN}.", add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids(SEG_TOKEN) in seg_ids
    assert SEG_TOKEN in tok.decode(seg_ids, skip_special_tokens=True)

    inputs = _inputs(processor)
    ids = inputs["input_ids"][0]
    assert (ids == tok.image_token_id).sum() == 10 * 4  # 4 tokens per frame at the tiny size
    assert (ids == tok.audio_token_id).sum() == 50  # 25 audio tokens per second
    assert inputs["input_features"].shape == (1, 128, 3000)
    assert "feature_attention_mask" in processor.model_input_names


def test_tiny_base_checkpoint_loads_and_generates(tiny_base_dir):
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny_base_dir).eval()
    processor = load_processor(tiny_base_dir)
    assert isinstance(processor, OmniProcessorNoVideo)
    assert model.config.vision_start_token_id == processor.tokenizer.convert_tokens_to_ids("<|vision_bos|>")
    assert model.generation_config.eos_token_id == processor.tokenizer.eos_token_id
    # Spare embedding rows: [SEG] can be added without resizing.
    assert model.config.get_text_config().vocab_size > len(processor.tokenizer)
    inputs = _inputs(processor)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert inputs["input_ids"].shape[1] < out.shape[1] <= inputs["input_ids"].shape[1] + 4
    for tensor in model.state_dict().values():
        assert torch.isfinite(tensor).all()


def test_tiny_command_writes_a_loadable_model(tmp_path, capsys, synth_dataset):
    out = tmp_path / "tiny"
    assert cli_main(["tiny", "--out", str(out), "--sam-size", "64", "--tokenizer-corpus", str(synth_dataset)]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    model = AuroraForSegmentation.from_pretrained(out)
    processor = load_processor(out)
    assert model.config.sam_image_size == 64
    assert model.config.seg_token_id == processor.tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    assert processor.tokenizer.tokenize(" lowest sound") == ["Ġlowest", "Ġsound"]  # the corpus's words
    assert cli_main(["tiny", "--out", str(tmp_path / "base"), "--base-only"]) == 0
    base = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tmp_path / "base")
    assert type(base) is Qwen2_5OmniThinkerForConditionalGeneration
