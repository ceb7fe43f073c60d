"""Overlays a person can read: small frames upscaled to a readable size, the mask in a colour that stands out from
the frame, filled and outlined, the ground truth outlined in another colour, and the frame's index written on it."""

import numpy as np
import torch
from PIL import Image

from aurora_trl.apps.visualize import MIN_SIDE, contour, contrasting_colours, overlay_frames, overlay_strip


def red_and_blue_frames(count=3, size=64):
    """The quickstart's look: red and blue shapes on a dark background."""
    frames = []
    for _ in range(count):
        image = np.full((size, size, 3), 30, dtype=np.uint8)
        image[8:28, 8:28] = (200, 30, 30)
        image[36:56, 36:56] = (30, 30, 200)
        frames.append(Image.fromarray(image))
    return frames


def square_mask(count=3, size=64):
    logits = torch.full((count, size, size), -5.0)
    logits[:, 8:28, 8:28] = 5.0  # the red square
    return logits


def test_small_frames_are_upscaled_with_their_masks_to_a_readable_size():
    tiles = overlay_frames(red_and_blue_frames(), square_mask())
    assert [tile.size for tile in tiles] == [(256, 256)] * 3  # 64 px x 4
    strip = overlay_strip(red_and_blue_frames(), square_mask())
    assert strip.size == (3 * 256, 256) and min(strip.size) >= MIN_SIDE
    big = Image.new("RGB", (640, 360))
    assert overlay_frames([big], torch.zeros(1, 360, 640))[0].size == (640, 360)  # never shrunk


def test_the_mask_colour_stands_out_and_has_a_solid_contour():
    frames, logits = red_and_blue_frames(), square_mask()
    tile = np.asarray(overlay_frames(frames, logits)[0]).astype(int)
    upscaled = np.asarray(frames[0].resize((256, 256))).astype(np.float32)
    colour, _ = contrasting_colours(upscaled, np.kron(logits[0].numpy() > 0, np.ones((4, 4), dtype=bool)))
    assert colour == (0, 255, 255)  # cyan: far from the dark frame and from the red object alike
    inside = tile[100, 100]  # the middle of the upscaled square (32..112)
    assert np.linalg.norm(inside - np.array([200, 30, 30])) > 100  # the tint changes the object visibly
    edge = tile[33, 70]  # on the square's top edge, inside the contour band
    assert tuple(edge) == colour
    outside = tile[200, 20]
    assert tuple(outside) == (30, 30, 30)  # the background is untouched


def test_the_ground_truth_is_outlined_in_a_second_colour():
    frames, logits = red_and_blue_frames(count=1), torch.full((1, 64, 64), -5.0)
    target = torch.zeros(1, 64, 64)
    target[:, 36:56, 36:56] = 1.0  # the blue square
    tile = np.asarray(overlay_frames(frames, logits, target)[0]).astype(int)
    _, truth_colour = contrasting_colours(np.asarray(frames[0].resize((256, 256))).astype(np.float32), None)
    assert tuple(tile[145, 180]) == truth_colour  # the top edge of the upscaled blue square (144..224)
    assert tuple(tile[180, 180]) == (30, 30, 200)  # its inside is not filled


def test_each_tile_carries_its_frame_index():
    frames, logits = red_and_blue_frames(count=2), torch.full((2, 64, 64), -5.0)
    first, second = (np.asarray(tile)[:24, :24] for tile in overlay_frames(frames, logits))
    assert (first[0, 0] == 0).all() and first.min(axis=-1).max() > 200  # a black box with light text
    assert not np.array_equal(first, second)  # "0" and "1"


def test_contour_is_the_band_inside_the_edge():
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:15, 5:15] = True
    band = contour(mask, width=2)
    assert band[5, 5] and band[6, 10] and not band[10, 10] and not band[0, 0]
    assert band.sum() == 100 - 36  # the 10x10 square less its 6x6 core
    assert not contour(np.zeros((4, 4), dtype=bool)).any()
