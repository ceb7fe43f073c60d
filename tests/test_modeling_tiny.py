"""The tiny offline builders: processor, base thinker checkpoint, and the `aurora-trl tiny` command."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen2_5OmniThinkerForConditionalGeneration

from aurora_trl.cli import main as cli_main
from aurora_trl.modeling import AuroraForSegmentation
from aurora_trl.modeling.processing import OmniProcessorNoVideo, load_processor
from aurora_trl.text import SEG_TOKEN, build_prompt
from aurora_trl.tiny_processor import build_tiny_processor


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


def test_local_window_limits_the_top_layer_and_sdpa_applies_it(tiny_local_aurora_dir):
    """`local_window` gives the top layer a sliding window: a token further back than the window reaches the top
    layer's output only through the first layer. transformers warns that sdpa does not implement sliding windows;
    it does, through the attention mask, and gives eager attention's states."""
    sdpa = AuroraForSegmentation.from_pretrained(tiny_local_aurora_dir, attn_implementation="sdpa").eval()
    eager = AuroraForSegmentation.from_pretrained(tiny_local_aurora_dir, attn_implementation="eager").eval()
    assert sdpa.config.get_text_config().layer_types == ["full_attention", "sliding_attention"]
    torch.manual_seed(0)
    input_ids = torch.randint(10, 200, (2, 30))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :7] = 0  # left padding
    with torch.no_grad():
        got = sdpa.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        expected = eager.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[1, 7:], expected[1, 7:], atol=1e-5, rtol=1e-5)
        attentions = eager.model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True).attentions
    last_query_first, last_query_top = attentions[0][0, :, -1], attentions[-1][0, :, -1]  # (heads, keys)
    assert (last_query_first[:, :-6] > 0).all()
    assert (last_query_top[:, :-6] == 0).all() and (last_query_top[:, -6:] > 0).all()


def test_seg_states_refeed_follows_the_sliding_layers():
    from transformers import Qwen2_5OmniTextConfig

    from aurora_trl.modeling.generation_states import refed_tokens

    full = Qwen2_5OmniTextConfig(num_hidden_layers=2)
    top = Qwen2_5OmniTextConfig(num_hidden_layers=3, use_sliding_window=True, sliding_window=6, max_window_layers=1)
    assert refed_tokens(full) == 0 and refed_tokens(top) == 10  # 5 tokens per sliding layer
    below = Qwen2_5OmniTextConfig(
        num_hidden_layers=2,
        use_sliding_window=True,
        sliding_window=6,
        layer_types=["sliding_attention", "full_attention"],
    )
    with pytest.raises(ValueError, match="on top of the full-attention ones"):
        refed_tokens(below)
