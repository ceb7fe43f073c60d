"""Masks drawn over frames: the overlay strips of `aurora-trl eval`, and the strip and GIF of `predict` and the demo."""

import numpy as np
import torch
from PIL import Image


PREDICTION_TINT = (127, 0, 0)  # red
TRUTH_TINT = (0, 100, 0)  # green


def overlay_frames(frames, logits: torch.Tensor, target: torch.Tensor | None = None) -> list[Image.Image]:
    """Each frame with its predicted mask (logits > 0, i.e. probability > 0.5) tinted red and, when given, the
    ground truth tinted green."""
    tiles = []
    truth = [None] * len(frames) if target is None else target > 0.5
    for frame, pred, gt in zip(frames, logits > 0, truth):
        image = np.asarray(frame.convert("RGB")).astype(np.float32)
        image[pred.numpy()] = 0.5 * image[pred.numpy()] + PREDICTION_TINT
        if gt is not None:
            image[gt.numpy()] = 0.6 * image[gt.numpy()] + TRUTH_TINT
        tiles.append(Image.fromarray(image.clip(0, 255).astype(np.uint8)))
    return tiles


def overlay_strip(frames, logits: torch.Tensor, target: torch.Tensor | None = None, height: int = 96) -> Image.Image:
    """The clip's overlaid frames side by side, each scaled to `height` pixels."""
    tiles = [t.resize((max(1, t.width * height // t.height), height)) for t in overlay_frames(frames, logits, target)]
    strip = Image.new("RGB", (sum(t.width for t in tiles), height))
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width
    return strip


def save_overlay_gif(frames, logits: torch.Tensor, path, seconds_per_frame: float = 0.5) -> None:
    """The overlaid frames as a looping animated GIF."""
    tiles = overlay_frames(frames, logits)
    tiles[0].save(path, save_all=True, append_images=tiles[1:], duration=int(seconds_per_frame * 1000), loop=0)


def mask_image(logits: torch.Tensor) -> Image.Image:
    """One frame's predicted mask as a black-and-white PNG-ready image (255 = object)."""
    return Image.fromarray(((logits > 0).numpy() * 255).astype(np.uint8))  # 2-D uint8: mode L
