"""SAM parts: batched decoding, official-checkpoint loading at another size, the image-embedding cache."""

import torch
import torch.nn.functional as F

from aurora_trl.modeling.embedding_cache import SamEmbeddingCache
from aurora_trl.modeling.sam import (
    MaskDecoder,
    SamSpec,
    build_sam,
    decode_masks,
    init_sam_module,
    load_sam_checkpoint,
    preprocess_frames,
    resized_size,
)


TINY = dict(
    embed_dim=32,
    depth=2,
    num_heads=2,
    global_attn_indexes=(1,),
    window_size=2,
    decoder_depth=1,
    decoder_heads=2,
    decoder_mlp_dim=64,
)


def _sam(size, seed=0):
    torch.manual_seed(seed)
    sam = build_sam(SamSpec(image_size=size, **TINY))
    for module in sam.modules():
        init_sam_module(module)
    return sam.eval()


def test_decode_masks_equals_mask_decoder_frame_by_frame():
    sam = _sam(64)
    with torch.no_grad():
        # Random weights for the parts constructors leave at zero, so the comparison is not trivial.
        for p in sam.mask_decoder.parameters():
            p.normal_(0, 0.1)
        embeddings = torch.randn(6, 256, 4, 4)
        prompts = torch.randn(6, 256)
        batched = decode_masks(sam, embeddings, prompts)
        sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
        reference = torch.cat(  # segment-anything's own forward, one prompt and one frame at a time
            [
                MaskDecoder.forward(
                    sam.mask_decoder,
                    image_embeddings=embeddings[i : i + 1],
                    image_pe=sam.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=torch.cat([sparse, prompts[i : i + 1, None]], dim=1),
                    dense_prompt_embeddings=dense,
                    multimask_output=False,
                )[0][:, 0]
                for i in range(6)
            ]
        )
    assert batched.shape == (6, 16, 16)
    torch.testing.assert_close(batched, reference, atol=1e-5, rtol=1e-5)


def test_official_checkpoint_is_interpolated_to_the_configured_size(tmp_path):
    official = _sam(128, seed=1)  # stands in for a 1024² checkpoint: an 8×8 grid here
    with torch.no_grad():
        for p in official.parameters():
            p.normal_(0, 0.5)
    path = tmp_path / "sam_vit_tiny.pth"
    torch.save(official.state_dict(), path)

    same = load_sam_checkpoint(_sam(128), str(path))
    for name, tensor in official.state_dict().items():
        assert torch.equal(same.state_dict()[name], tensor), name

    small = load_sam_checkpoint(_sam(64), str(path))
    pos = official.image_encoder.pos_embed
    expected = F.interpolate(pos.permute(0, 3, 1, 2), size=(4, 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(small.image_encoder.pos_embed, expected.permute(0, 2, 3, 1))
    # The global-attention block's rel-pos table follows the grid (2·4-1 rows); the windowed block keeps its own.
    assert small.image_encoder.blocks[1].attn.rel_pos_h.shape[0] == 7
    assert torch.equal(small.image_encoder.blocks[0].attn.rel_pos_h, official.image_encoder.blocks[0].attn.rel_pos_h)
    assert torch.equal(small.mask_decoder.iou_token.weight, official.mask_decoder.iou_token.weight)
    with torch.no_grad():
        assert small.image_encoder(torch.randn(1, 3, 64, 64)).shape == (1, 256, 4, 4)


def test_preprocess_frames_resizes_longest_side_and_pads():
    from PIL import Image

    frames = [Image.new("RGB", (100, 50), (123, 116, 103))] * 2
    sam = preprocess_frames(frames, 64)
    assert resized_size(50, 100, 64) == (32, 64) and sam.input_size == (32, 64) and sam.original_size == (50, 100)
    assert sam.pixel_values.shape == (2, 3, 64, 64)
    assert sam.pixel_values[:, :, :32].abs().max() < 0.02  # the SAM mean colour normalises to ~0
    assert torch.count_nonzero(sam.pixel_values[:, :, 32:]) == 0


def test_embedding_cache_hit_equals_recompute(tiny_aurora, tiny_clip, tmp_path):
    model, _ = tiny_aurora
    frames, _ = tiny_clip
    pixels = preprocess_frames(frames, model.config.sam_image_size).pixel_values
    with torch.no_grad():
        recompute = model.encode_images(pixels)

    cache = SamEmbeddingCache(tmp_path)
    first = cache.get_or_compute(model, "clip/0", pixels)
    for _ in range(7):  # the other completions of a GRPO group
        again = cache.get_or_compute(model, "clip/0", pixels)
    assert cache.misses == 1 and cache.hits["memory"] == 7
    assert torch.equal(first, recompute) and torch.equal(again, recompute)

    fresh = SamEmbeddingCache(tmp_path)  # a new epoch / run: read from disk
    from_disk = fresh.get_or_compute(model, "clip/0", pixels)
    assert fresh.hits["disk"] == 1 and fresh.misses == 0
    assert torch.equal(from_disk, recompute)

    # Another input size or other encoder weights never read a stale entry.
    with torch.no_grad():
        model.sam.image_encoder.neck[0].weight.mul_(2)
    changed = fresh.get_or_compute(model, "clip/0", pixels)
    assert fresh.misses == 1 and not torch.equal(changed, recompute)
    with torch.no_grad():
        assert torch.equal(changed, model.encode_images(pixels))
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2

    # switched off (sharded weights): every call encodes, nothing is kept
    off = SamEmbeddingCache(tmp_path / "off", enabled=False)
    with torch.no_grad():
        assert torch.equal(off.embeddings(model, "clip/0", pixels), model.encode_images(pixels))
    assert off.misses == 0 and not off._memory and not (tmp_path / "off").exists()


def test_the_config_holds_every_sam_spec_field_and_round_trips_through_json(tmp_path):
    """`SamSpec` declares SAM's dimensions once; the model config has a `sam_{name}` field for each, with the spec's
    default, and a spec written into a config survives `config.json`."""
    from aurora_trl.modeling import AuroraConfig

    config = AuroraConfig()
    names = {name for name in config.to_dict() if name.startswith("sam_")}
    assert names == {f"sam_{name}" for name in SamSpec.__dataclass_fields__}
    assert config.sam_spec == SamSpec()
    spec = SamSpec.from_variant("vit_b", image_size=1024)
    config.set_sam_spec(spec)
    config.save_pretrained(tmp_path)
    assert AuroraConfig.from_pretrained(tmp_path).sam_spec == spec
