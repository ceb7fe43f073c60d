"""SAM (segment-anything) for AURORA: building at any input size, official checkpoints, initialisation, decoding.

- **Import without torchvision.** `segment_anything/__init__.py` imports its predictor, which imports torchvision;
  the modeling code itself needs only torch. [`import_sam_modeling`] bypasses the package `__init__` when
  torchvision is missing (or broken).
- **Input size.** SAM was trained at 1024² (a 64×64 image embedding); LISA keeps 1024, AURORA runs SAM at 224²
  (14×14). [`build_sam`] builds at any multiple of the patch size; [`load_sam_checkpoint`] loads an official
  `sam_vit_{b,l,h}_*.pth` (with `torch.load(weights_only=True)`) and interpolates the absolute position embedding
  (bicubic) and the relative position tables of the global-attention blocks (linear) to that size.
- **Initialisation.** transformers initialises tensors missing from a checkpoint only through `_init_weights`,
  which knows `Linear`/`Conv`/`Embedding`/`*LayerNorm*` but not SAM's raw parameters and buffers; and
  `pixel_mean`/`pixel_std` are non-persistent buffers, never saved. [`init_sam_module`] fills all of them.
- **Decoding.** `MaskDecoder` is built for one image and many prompts: it repeats the image embedding once per
  prompt. AURORA needs the opposite (one `[SEG]` prompt for T frames, and B·T (prompt, frame) pairs in a batch).
  [`PairedMaskDecoder`] is a `MaskDecoder` whose forward takes one-to-one (prompt, frame) pairs; it equals calling
  `MaskDecoder.forward` frame by frame (tested) and runs all pairs in one batch. Decoding is a module call so that
  DeepSpeed ZeRO-3, which gathers a module's sharded weights only when its forward runs, sees every weight it reads.
- **Precision.** The decoder computes in its own weights' dtype, whatever its inputs' (a bf16 backbone, an fp32
  decoder, or everything bf16 under DeepSpeed), with or without autocast. segment-anything builds its position grid
  in float32 and multiplies it with a buffer that loading in bf16 casts; [`image_positional_encoding`] computes that
  encoding in float32 instead.
- **ZeRO-3.** `zero.Init` replaces `torch.Tensor`, which `Sam.__init__` calls for its pixel statistics;
  [`AuroraSam`] registers the same buffers with `torch.tensor`, so the model builds under `zero.Init`.
- **Pre-processing.** [`preprocess_frames`] is the one place that turns PIL frames into SAM input: resize the
  longest side, normalise with SAM's mean/std, zero-pad to a square.
"""

import importlib
import importlib.util
import pickle
import re
import sys
import types
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init


SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
SAM_PRETRAIN_SIZE = 1024

# Encoder dimensions of the official checkpoints (segment_anything/build_sam.py); the decoder is the same for all.
SAM_VARIANTS = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=[2, 5, 8, 11]),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=[5, 11, 17, 23]),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=[7, 15, 23, 31]),
}


def import_sam_modeling() -> types.ModuleType:
    """Return `segment_anything.modeling`, importing it without torchvision when needed."""
    if "segment_anything.modeling" in sys.modules:
        return sys.modules["segment_anything.modeling"]
    try:
        import segment_anything  # noqa: F401  (works when a matching torchvision is installed)
    except Exception:  # ModuleNotFoundError, or RuntimeError from a torchvision built for another torch
        spec = importlib.util.find_spec("segment_anything")
        if spec is None:
            raise ImportError("segment-anything is not installed: pip install segment-anything") from None
        # An empty package object with the real search path: submodules import, the package __init__ does not run.
        for name in [n for n in sys.modules if n == "segment_anything" or n.startswith("segment_anything.")]:
            del sys.modules[name]
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = package
    return importlib.import_module("segment_anything.modeling")


_sam = import_sam_modeling()
Sam, ImageEncoderViT, PromptEncoder, MaskDecoder, TwoWayTransformer = (
    _sam.Sam,
    _sam.ImageEncoderViT,
    _sam.PromptEncoder,
    _sam.MaskDecoder,
    _sam.TwoWayTransformer,
)
_PositionEmbeddingRandom = importlib.import_module("segment_anything.modeling.prompt_encoder").PositionEmbeddingRandom
_EncoderAttention = importlib.import_module("segment_anything.modeling.image_encoder").Attention


@dataclass
class SamSpec:
    """Dimensions of a SAM model. Defaults: ViT-H (the LISA/AURORA choice) at AURORA's 224² input.

    The one declaration of SAM's dimensions: [`~aurora_trl.modeling.AuroraConfig`] stores each field as
    `sam_{name}` (its `sam_spec` and `set_sam_spec` convert), so a field added here is a config field too.

    Args:
        image_size (`int`): Input size in pixels (square, multiple of `patch_size`); AURORA 224 (a 14×14 image
            embedding), LISA and SAM's pretraining 1024.
        embed_dim (`int`): Width of the ViT image encoder (ViT-H 1280, ViT-L 1024, ViT-B 768).
        depth (`int`): ViT blocks (ViT-H 32, ViT-L 24, ViT-B 12).
        num_heads (`int`): ViT attention heads (ViT-H and ViT-L 16, ViT-B 12).
        global_attn_indexes (`tuple[int, ...]`): ViT blocks with global attention; the others are windowed.
        patch_size (`int`): ViT patch size (16 in every official checkpoint).
        window_size (`int`): Window of the windowed-attention blocks (14 in every official checkpoint).
        prompt_dim (`int`): Prompt/embedding width shared by the encoder neck, prompt encoder and decoder (256); the
            `[SEG]` projector maps the LLM's hidden size to it.
        decoder_depth, decoder_heads, decoder_mlp_dim (`int`): The mask decoder's two-way transformer (2, 8, 2048).
    """

    image_size: int = 224
    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    patch_size: int = 16
    window_size: int = 14
    prompt_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048

    @classmethod
    def from_variant(cls, variant: str, image_size: int = 224) -> "SamSpec":
        """The dimensions of an official checkpoint (`"vit_b"`, `"vit_l"`, `"vit_h"`) at `image_size`."""
        if variant not in SAM_VARIANTS:
            raise ValueError(f"unknown SAM variant {variant!r}; expected one of {sorted(SAM_VARIANTS)}")
        dims = SAM_VARIANTS[variant]
        return cls(image_size=image_size, **{**dims, "global_attn_indexes": tuple(dims["global_attn_indexes"])})


class AuroraSam(Sam):
    """segment-anything's `Sam` (image encoder, prompt encoder, mask decoder, pixel statistics), buildable under
    DeepSpeed ZeRO-3: `Sam.__init__` makes its pixel statistics with `torch.Tensor(list)`, which `zero.Init`'s
    replacement of `torch.Tensor` rejects. The buffers are the same (non-persistent, SAM's values)."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module) -> None:
        nn.Module.__init__(self)
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(SAM_PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(SAM_PIXEL_STD).view(-1, 1, 1), persistent=False)


class PairedMaskDecoder(MaskDecoder):
    """SAM's `MaskDecoder` for one-to-one (prompt, image) pairs, single-mask output.

    `MaskDecoder.forward` pairs every prompt with every image (it repeats the image embedding once per prompt);
    this forward runs the same sub-modules on row i's image with row i's prompt, and returns the first mask token's
    mask, the `multimask_output=False` output. It computes in the dtype of its own weights.
    """

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> torch.Tensor:
        """Low-resolution mask logits `(N, 4h, 4w)` of `image_embeddings` `(N, C, h, w)` prompted by
        `prompt_embeddings` `(N, C)` (the sparse prompt is the one embedding), with the dense prompt and the
        position encoding `(1, C, h, w)` of the prompt encoder."""
        dtype = self.iou_token.weight.dtype
        n = prompt_embeddings.shape[0]
        if image_embeddings.shape[0] != n:
            raise ValueError(f"{image_embeddings.shape[0]} image embeddings for {n} prompts: pairs must be one-to-one")
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens[None].expand(n, -1, -1), prompt_embeddings.to(dtype)[:, None]], dim=1)
        src = image_embeddings.to(dtype) + dense_prompt_embeddings.to(dtype)
        pos_src = image_pe.to(dtype).expand(n, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        mask_token = hs[:, 1, :]  # the first mask token = the single-mask output
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = self.output_hypernetworks_mlps[0](mask_token)
        b, c, h, w = upscaled.shape
        return (hyper[:, None] @ upscaled.reshape(b, c, h * w)).reshape(b, h, w)


def build_sam(spec: SamSpec) -> nn.Module:
    """A randomly initialised `segment_anything` `Sam` with the dimensions of `spec` (call [`init_sam_module`] on
    its modules, or load a checkpoint, before use)."""
    if spec.image_size % spec.patch_size:
        raise ValueError(f"SAM image size {spec.image_size} is not a multiple of the patch size {spec.patch_size}")
    grid = spec.image_size // spec.patch_size
    return AuroraSam(
        image_encoder=ImageEncoderViT(
            depth=spec.depth,
            embed_dim=spec.embed_dim,
            img_size=spec.image_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=spec.num_heads,
            patch_size=spec.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(spec.global_attn_indexes),
            window_size=spec.window_size,
            out_chans=spec.prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=spec.prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(spec.image_size, spec.image_size),
            mask_in_chans=16,
        ),
        mask_decoder=PairedMaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=spec.decoder_depth,
                embedding_dim=spec.prompt_dim,
                mlp_dim=spec.decoder_mlp_dim,
                num_heads=spec.decoder_heads,
            ),
            transformer_dim=spec.prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )


@torch.no_grad()
def init_sam_module(module: nn.Module) -> bool:
    """Initialise the SAM tensors that transformers' default `_init_weights` does not know.

    Called from `_init_weights` for every module; returns `True` when `module` was handled here. It uses
    `transformers.initialization`, whose functions skip tensors already loaded from a checkpoint. Values follow
    segment-anything's own constructors (zero position embeddings and rel-pos tables, N(0, 1) random Fourier
    matrix, SAM's pixel statistics), so a random SAM built here behaves like a freshly constructed one.
    """
    if isinstance(module, Sam):
        init.copy_(module.pixel_mean, torch.tensor(SAM_PIXEL_MEAN, dtype=module.pixel_mean.dtype).view(-1, 1, 1))
        init.copy_(module.pixel_std, torch.tensor(SAM_PIXEL_STD, dtype=module.pixel_std.dtype).view(-1, 1, 1))
        return True
    if isinstance(module, ImageEncoderViT):
        if module.pos_embed is not None:
            init.zeros_(module.pos_embed)
        return True
    if isinstance(module, _EncoderAttention):
        if module.use_rel_pos:
            init.zeros_(module.rel_pos_h)
            init.zeros_(module.rel_pos_w)
        return True
    if isinstance(module, _PositionEmbeddingRandom):
        init.normal_(module.positional_encoding_gaussian_matrix, mean=0.0, std=1.0)
        return True
    return False


def sam_state_dict_for_size(state_dict: dict[str, torch.Tensor], image_size: int, patch_size: int = 16):
    """Adapt an official SAM state dict (1024² pretraining) to `image_size`.

    The absolute position embedding `image_encoder.pos_embed` (1, 64, 64, C) is resized bicubically to the new
    grid; the relative position tables of the global-attention blocks (length 2·64-1) are resized linearly to
    2·grid-1. Windowed blocks keep their tables (their window does not change). Returns a new dict.
    """
    grid = image_size // patch_size
    out = dict(state_dict)
    pos = state_dict.get("image_encoder.pos_embed")
    if pos is not None and pos.shape[1] != grid:
        resized = F.interpolate(
            pos.permute(0, 3, 1, 2).float(), size=(grid, grid), mode="bicubic", align_corners=False
        )
        out["image_encoder.pos_embed"] = resized.permute(0, 2, 3, 1).to(pos.dtype)
    old_grid = pos.shape[1] if pos is not None else SAM_PRETRAIN_SIZE // patch_size
    for key, table in state_dict.items():
        if key.endswith(("attn.rel_pos_h", "attn.rel_pos_w")) and table.shape[0] == 2 * old_grid - 1:
            if table.shape[0] != 2 * grid - 1:
                resized = F.interpolate(table.T[None].float(), size=2 * grid - 1, mode="linear", align_corners=False)
                out[key] = resized[0].T.to(table.dtype)
    return out


def load_sam_checkpoint(sam: nn.Module, path: str, strict: bool = True) -> nn.Module:
    """Load an official SAM `.pth` (vit_b, vit_l or vit_h) into `sam`, interpolating positions to its input size.

    Uses `torch.load(weights_only=True)`: the official files hold a plain state dict, so no pickled code runs. A
    file that holds anything else (a pickled function call, arbitrary objects) raises `ValueError` before any of
    it runs. `pixel_mean`/`pixel_std` are not in those files (non-persistent); they keep the values set at
    construction.
    """
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a page long and suggests allow-listing the offending global; name it and refuse.
        found = re.search(r"GLOBAL (\S+)", str(err))
        reason = f"it refers to {found.group(1)}" if found else str(err).splitlines()[0]
        raise ValueError(
            f"{path} is not a plain SAM state dict (only tensors are accepted), not loaded: {reason}"
        ) from None
    state_dict = sam_state_dict_for_size(
        state_dict, sam.image_encoder.img_size, sam.image_encoder.patch_embed.proj.stride[0]
    )
    sam.load_state_dict(state_dict, strict=strict)
    return sam


def image_positional_encoding(prompt_encoder: nn.Module) -> torch.Tensor:
    """SAM's dense position encoding `(1, C, h, w)` of the image-embedding grid (`PromptEncoder.get_dense_pe`),
    computed in float32 whatever the dtype of the model.

    The encoding is random Fourier features of the grid's cell centres in [-1, 1]²: `[sin(2π·x·G), cos(2π·x·G)]`
    with SAM's Gaussian matrix G. segment-anything makes the grid in float32 and multiplies it with G, which fails
    once G is cast to bf16 or fp16; and those dtypes would round the phases.
    """
    gaussian = prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.float()
    h, w = prompt_encoder.image_embedding_size
    ys = (torch.arange(h, device=gaussian.device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=gaussian.device, dtype=torch.float32) + 0.5) / w
    grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)  # (h, w, 2) as (x, y)
    phases = 2 * np.pi * ((2 * grid - 1) @ gaussian)
    return torch.cat([phases.sin(), phases.cos()], dim=-1).permute(2, 0, 1)[None]


def decode_masks(
    sam: nn.Module,
    image_embeddings: torch.Tensor,
    prompt_embeddings: torch.Tensor,
) -> torch.Tensor:
    """Low-resolution mask logits for one-to-one (prompt, image) pairs.

    Args:
        sam (`AuroraSam`):
            The SAM model (its prompt encoder and [`PairedMaskDecoder`] are used).
        image_embeddings (`torch.Tensor` of shape `(N, C, h, w)`):
            Image-encoder output, one row per pair. An `expand`ed view (a clip's frames shared by several
            prompts) costs no copy until the decoder adds the dense prompt.
        prompt_embeddings (`torch.Tensor` of shape `(N, C)`):
            The projected `[SEG]` embedding of each pair.

    Returns:
        `torch.Tensor` of shape `(N, 4h, 4w)`, in the decoder's dtype: the single-mask output
        (`multimask_output=False`).
    """
    # No points, boxes or masks: the sparse prompt is the [SEG] embedding alone, the dense prompt `no_mask_embed`.
    _, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
    image_pe = image_positional_encoding(sam.prompt_encoder).to(dense.device)
    return sam.mask_decoder(image_embeddings, image_pe, prompt_embeddings, dense)


def postprocess_masks(
    low_res: torch.Tensor, image_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """Low-resolution logits `(..., h, w)` → float32 logits at the frame size: upsample to the SAM input, crop the
    padding, resize to `original_size` (bilinear, as SAM's `postprocess_masks`)."""
    lead = low_res.shape[:-2]
    # float32, so that masks (and the metrics and losses computed on them) do not depend on the decoder's dtype
    x = low_res.float().reshape(-1, 1, *low_res.shape[-2:])
    x = F.interpolate(x, (image_size, image_size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    x = F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)
    return x.reshape(*lead, *original_size)


def resized_size(height: int, width: int, image_size: int) -> tuple[int, int]:
    """Size after resizing the longest side to `image_size` (SAM's `ResizeLongestSide` rounding)."""
    scale = image_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass
class SamFrames:
    """SAM input for the frames of one clip.

    Attributes:
        pixel_values (`torch.Tensor` of shape `(T, 3, S, S)`): normalised, zero-padded frames.
        input_size (`tuple[int, int]`): (h, w) of the resized frames inside the padded square.
        original_size (`tuple[int, int]`): (H, W) of the frames; masks are returned at this size.
    """

    pixel_values: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]


def preprocess_frames(frames, image_size: int) -> SamFrames:
    """PIL frames (or H×W×3 uint8 arrays) of one clip → [`SamFrames`]: resize the longest side to `image_size`
    (bilinear), normalise with SAM's mean/std, zero-pad bottom/right to `image_size`². All frames must share a size.
    """
    from PIL import Image

    arrays = [np.asarray(f.convert("RGB") if isinstance(f, Image.Image) else f) for f in frames]
    height, width = arrays[0].shape[:2]
    if any(a.shape[:2] != (height, width) for a in arrays):
        raise ValueError("all frames of a clip must have the same size")
    new_h, new_w = resized_size(height, width, image_size)
    resized = [np.asarray(Image.fromarray(a).resize((new_w, new_h), Image.BILINEAR)) for a in arrays]
    x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1)
    x = F.pad((x - mean) / std, (0, image_size - new_w, 0, image_size - new_h))
    return SamFrames(pixel_values=x, input_size=(new_h, new_w), original_size=(height, width))
