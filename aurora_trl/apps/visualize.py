"""Masks drawn over frames so that a person can read them: the overlay strips of `aurora-trl eval`, and the strip,
GIF and gallery of `predict` and the demo.

Each frame is shown at least `MIN_SIDE` pixels on its shorter side (small frames are upscaled, the mask with them,
without smoothing), the predicted mask is filled half-transparent and outlined in the palette colour farthest from
the frame's own colours, the ground truth (when given) is outlined in the next-farthest one, and the frame's index
is written in its corner.
"""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw


MIN_SIDE = 256
# Saturated colours that stand out on natural frames; each frame takes the ones farthest from its
# own colours. White is left out: a white fill reads as a faded object.
PALETTE = ((255, 230, 0), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 120, 0))
FILL_ALPHA = 0.45
CONTOUR_WIDTH = 3  # pixels at the displayed size


def readable_scale(width: int, height: int, min_side: int = MIN_SIDE) -> int:
    """The whole-number upscale that brings a frame's shorter side to at least `min_side` (1 when it already is)."""
    return max(1, -(-min_side // min(width, height)))


def contrasting_colours(image: np.ndarray, region: np.ndarray | None = None, count: int = 2) -> list[tuple]:
    """The `count` palette colours farthest (in RGB) from both the frame's mean colour and, when given and not
    empty, the mean colour of `region` (the object the mask covers), farthest first."""
    means = [image.reshape(-1, 3).mean(axis=0)]
    if region is not None and region.any():
        means.append(image[region].mean(axis=0))

    def distance(colour) -> float:
        return min(float(np.linalg.norm(np.asarray(colour) - mean)) for mean in means)

    return sorted(PALETTE, key=distance, reverse=True)[:count]


def contour(mask: np.ndarray, width: int = CONTOUR_WIDTH) -> np.ndarray:
    """The band of `width` pixels inside a boolean mask's edge (the mask less its erosion)."""
    if not mask.any():
        return mask
    inside = torch.from_numpy(mask.astype(np.float32))[None, None]
    eroded = -F.max_pool2d(-inside, kernel_size=2 * width + 1, stride=1, padding=width)
    return mask & ~(eroded[0, 0].numpy() > 0.5)


def _upscaled(mask: torch.Tensor, scale: int) -> np.ndarray:
    return np.kron(mask.numpy(), np.ones((scale, scale), dtype=bool)) if scale > 1 else mask.numpy()


def overlay_frames(
    frames, logits: torch.Tensor, target: torch.Tensor | None = None, min_side: int = MIN_SIDE
) -> list[Image.Image]:
    """Each frame, upscaled to a readable size, with its predicted mask (logits > 0, i.e. probability > 0.5) filled
    and outlined and, when given, the ground truth outlined; the frame index in the top-left corner."""
    tiles = []
    truth = [None] * len(frames) if target is None else target > 0.5
    for index, (frame, pred, gt) in enumerate(zip(frames, logits > 0, truth)):
        frame = frame.convert("RGB")
        scale = readable_scale(frame.width, frame.height, min_side)
        frame = frame.resize((frame.width * scale, frame.height * scale), Image.Resampling.LANCZOS)
        image = np.asarray(frame).astype(np.float32)
        predicted = _upscaled(pred, scale)
        mask_colour, truth_colour = contrasting_colours(image, predicted)
        image[predicted] = (1 - FILL_ALPHA) * image[predicted] + FILL_ALPHA * np.asarray(mask_colour)
        image[contour(predicted)] = mask_colour
        if gt is not None:
            image[contour(_upscaled(gt, scale))] = truth_colour
        tile = Image.fromarray(image.clip(0, 255).astype(np.uint8))
        _label(tile, str(index))
        tiles.append(tile)
    return tiles


def _label(tile: Image.Image, text: str) -> None:
    """`text` in white on a black box in the tile's top-left corner."""
    draw = ImageDraw.Draw(tile)
    _, _, right, bottom = draw.textbbox((4, 4), text, font_size=max(12, tile.height // 16))
    draw.rectangle((0, 0, right + 4, bottom + 4), fill=(0, 0, 0))
    draw.text((4, 4), text, fill=(255, 255, 255), font_size=max(12, tile.height // 16))


def overlay_strip(
    frames, logits: torch.Tensor, target: torch.Tensor | None = None, min_side: int = MIN_SIDE
) -> Image.Image:
    """The clip's overlaid frames (see [`overlay_frames`]) side by side."""
    tiles = overlay_frames(frames, logits, target, min_side)
    strip = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
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
    """One frame's predicted mask as a black-and-white PNG-ready image (255 = object), at the frame's own size."""
    return Image.fromarray(((logits > 0).numpy() * 255).astype(np.uint8))  # 2-D uint8: mode L
