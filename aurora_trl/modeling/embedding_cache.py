"""A cache of SAM image embeddings: the frozen encoder runs once per clip and input size.

In GRPO every completion of a group segments the same clip, and across epochs the same clips come back. With
SAM's image encoder frozen (AURORA's policy) its output depends only on the frames, the input size and the
encoder weights, so it is computed once and reused:

- **in memory** (LRU over clips) across the G completions of a group and the steps of an epoch;
- **on disk** (optional, one safetensors file per clip) across epochs and runs.

Entries are keyed by clip id, frame ids, SAM input size and a fingerprint of the encoder weights (SHA-256 over its
state dict, recomputed whenever a weight is modified in place), so a different SAM checkpoint or size never
reads stale embeddings. The key does not hash the pixels: a clip id must name the same pre-processed frames each
time (true without augmentation, which AURORA does not use).

A hit returns exactly what a recompute returns: a miss encodes the clip's frames in one batch, as
`model.encode_images(pixel_values)` does, and safetensors stores the tensors bit for bit.
"""

import hashlib
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """SHA-256 hex digest of an encoder's state dict (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class SamEmbeddingCache:
    """SAM image-embedding cache (in memory, optionally on disk).

    Args:
        cache_dir (`str` or `Path`, *optional*):
            Folder for the on-disk cache; `None` keeps the cache in memory only.
        max_clips_in_memory (`int`, *optional*, defaults to `64`):
            Clips kept in memory (least recently used first out). At 224² with ViT-H one clip of 10 frames is
            10 × 256 × 14 × 14 floats = 2 MB; at 1024², 42 MB.
        enabled (`bool`, *optional*, defaults to `True`):
            `False` encodes every time ([`embeddings`]). Needed when the encoder's weights are sharded across
            processes (DeepSpeed ZeRO-3, FSDP): each forward gathers them from every process, so a hit on one
            process and a miss on another would leave the miss waiting for a gather the other never joins.

    Example:

    ```python
    >>> cache = SamEmbeddingCache("cache/sam")
    >>> emb = cache.get_or_compute(model, "clip_0001", sam_frames.pixel_values)  # (T, 256, h, w)
    >>> masks = model.predict_masks(seg, image_embeddings=emb[None], input_sizes=..., original_sizes=...)
    ```
    """

    def __init__(self, cache_dir: str | Path | None = None, max_clips_in_memory: int = 64, enabled: bool = True):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_clips_in_memory = max_clips_in_memory
        self.enabled = enabled
        self._memory: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._fingerprints: dict[int, tuple[tuple, str]] = {}
        self.hits = {"memory": 0, "disk": 0}
        self.misses = 0

    def fingerprint(self, encoder: torch.nn.Module) -> str:
        """The encoder's weight fingerprint, hashed again only when a tensor was modified (its version changed)."""
        versions = tuple(t._version for t in encoder.state_dict(keep_vars=True).values())
        cached = self._fingerprints.get(id(encoder))
        if cached is None or cached[0] != versions:
            cached = (versions, encoder_fingerprint(encoder))
            self._fingerprints[id(encoder)] = cached
        return cached[1]

    def _key(self, model, clip_id: str, frame_ids: Sequence, pixel_values: torch.Tensor) -> tuple:
        size = int(pixel_values.shape[-1])
        return (str(clip_id), tuple(str(f) for f in frame_ids), size, self.fingerprint(model.sam.image_encoder))

    def _path(self, key: tuple) -> Path:
        clip_id, frame_ids, size, fingerprint = key
        frames = hashlib.sha1("|".join(frame_ids).encode()).hexdigest()[:12]
        safe_clip = re.sub(r"[^A-Za-z0-9._-]", "_", clip_id)
        return self.cache_dir / fingerprint[:16] / str(size) / f"{safe_clip}.{frames}.safetensors"

    def get_or_compute(
        self,
        model,
        clip_id: str,
        pixel_values: torch.Tensor,
        frame_ids: Sequence | None = None,
    ) -> torch.Tensor:
        """The SAM image embeddings `(T, C, h, w)` of one clip's pre-processed frames `(T, 3, S, S)`.

        Args:
            model ([`AuroraSegmentationMixin`]):
                The model whose `sam.image_encoder` (through `encode_images`) produces the embeddings.
            clip_id (`str`):
                Identifies the clip (e.g. the Ref-AVS video id); with `frame_ids` it must identify the pixels.
            pixel_values (`torch.Tensor` of shape `(T, 3, S, S)`):
                Output of `preprocess_frames`; only encoded on a miss.
            frame_ids (`Sequence`, *optional*):
                Frame identifiers; defaults to `range(T)`.
        """
        frame_ids = range(pixel_values.shape[0]) if frame_ids is None else frame_ids
        key = self._key(model, clip_id, frame_ids, pixel_values)
        device = model.sam.image_encoder.patch_embed.proj.weight.device
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits["memory"] += 1
            return self._memory[key].to(device)
        if self.cache_dir is not None and self._path(key).exists():
            embeddings = load_file(self._path(key))["embeddings"]
            self.hits["disk"] += 1
        else:
            self.misses += 1
            with torch.no_grad():
                embeddings = model.encode_images(pixel_values).detach()
            if self.cache_dir is not None:
                path = self._path(key)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                save_file({"embeddings": embeddings.to("cpu").contiguous()}, tmp)
                tmp.replace(path)  # atomic: concurrent readers never see a half-written file
        self._memory[key] = embeddings
        while len(self._memory) > self.max_clips_in_memory:
            self._memory.popitem(last=False)
        return embeddings.to(device)

    def embeddings(self, model, clip_id: str | None, pixel_values: torch.Tensor) -> torch.Tensor:
        """[`get_or_compute`] for a frozen encoder; a trainable one (or a clip without an id, or a disabled cache)
        encodes the frames again, with autograd when it trains, since its output changes with every step."""
        encoder = model.sam.image_encoder
        if not self.enabled or clip_id is None or any(p.requires_grad for p in encoder.parameters()):
            return model.encode_images(pixel_values)
        return self.get_or_compute(model, clip_id, pixel_values)
