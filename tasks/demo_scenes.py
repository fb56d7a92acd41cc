"""Scenes for the demo dataset, painted with numpy and Pillow: aerial-looking tiles of each demo class (field,
forest, water, residential) and out-of-place pictures (a document, a living room, a test card)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

# --------------------------------------------------------------------------------------------------
# Texture primitives


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random cells x cells grid upsampled bicubically to size x size."""
    grid = rng.random((cells, cells), dtype=np.float32)
    upsampled = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(upsampled), 0.0, 1.0)


def _fractal_noise(rng: np.random.Generator, size: int, base_cells: int, octaves: int = 4) -> np.ndarray:
    """Sum of value-noise octaves, normalised to [0, 1]; gives clumpy, natural-looking variation."""
    total = np.zeros((size, size), np.float32)
    weight_sum = 0.0
    for octave in range(octaves):
        weight = 0.5**octave
        total += weight * _value_noise(rng, size, base_cells * 2**octave)
        weight_sum += weight
    total /= weight_sum
    return (total - total.min()) / max(float(total.max() - total.min()), 1e-6)


def _jitter(rng: np.random.Generator, colour: RGB, spread: int) -> RGB:
    """A colour near `colour`, so that no two tiles share an exact palette."""
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in colour)  # type: ignore[return-value]


def _rotate_and_crop(canvas: Image.Image, angle: float, size: int) -> Image.Image:
    """Rotate an oversized canvas and cut the centre, so rotated layouts have no empty corners."""
    rotated = canvas.rotate(angle, resample=Image.Resampling.BILINEAR)
    offset = (rotated.width - size) // 2
    return rotated.crop((offset, offset, offset + size, offset + size))


def _canvas_size(size: int) -> int:
    """Side of a square canvas whose centre size x size crop survives any rotation."""
    return math.ceil(size * math.sqrt(2)) + 4


def _finish(rgb: np.ndarray, rng: np.random.Generator, grain: float) -> np.ndarray:
    """Apply a random camera grade (exposure, contrast, white balance, saturation) and grain.

    The grade is drawn per tile because real tiles differ in sensor, season and haze; it also keeps
    tiles of one class from sharing a colour signature that would make them look like duplicates.
    """
    mean = rgb.mean(axis=(0, 1), keepdims=True)
    graded = mean + (rgb - mean) * rng.uniform(0.8, 1.3)
    grey = graded.mean(axis=2, keepdims=True)
    graded = grey + (graded - grey) * rng.uniform(0.6, 1.4)
    graded = graded * rng.uniform(0.88, 1.12, size=3) * rng.uniform(0.85, 1.15)
    noisy = graded + rng.normal(0.0, grain, rgb.shape[:2])[..., None]
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _random_path(rng: np.random.Generator, size: int, bends: int) -> list[tuple[float, float]]:
    """A polyline crossing a size x size canvas from one edge to the opposite one."""
    start, end = rng.uniform(0, size, size=2)
    if rng.random() < 0.5:
        ends = [(start, -10.0), (end, size + 10.0)]
    else:
        ends = [(-10.0, start), (size + 10.0, end)]
    middle = [tuple(rng.uniform(0.2 * size, 0.8 * size, size=2)) for _ in range(bends)]
    return [ends[0], *middle, ends[1]]  # type: ignore[list-item]


def _draw_crowns(image: Image.Image, rng: np.random.Generator, count: int, radius_range: tuple[float, float],
                 base: RGB, mask: np.ndarray | None = None) -> None:
    """Tree crowns: a shadow disc, the crown and a sunlit highlight, with one sun direction per image.

    Crowns whose centre falls where `mask` is False are skipped (e.g. clearings, water).
    """
    draw = ImageDraw.Draw(image)
    sun_angle = rng.uniform(0, 2 * np.pi)
    shadow_dx, shadow_dy = np.cos(sun_angle), np.sin(sun_angle)
    for _ in range(count):
        x, y = rng.uniform(0, image.width, size=2)
        if mask is not None and not mask[int(y), int(x)]:
            continue
        radius = rng.uniform(*radius_range)
        shade = rng.uniform(0.65, 1.3)
        crown = tuple(int(np.clip(c * shade, 0, 255)) for c in base)
        offset = radius * 0.6
        draw.ellipse((x - radius + offset * shadow_dx, y - radius + offset * shadow_dy,
                      x + radius + offset * shadow_dx, y + radius + offset * shadow_dy), fill=(18, 28, 16))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=crown)
        highlight = tuple(min(255, int(c * 1.3)) for c in crown)
        small, back = radius * 0.45, offset * 0.5
        draw.ellipse((x - small - back * shadow_dx, y - small - back * shadow_dy,
                      x + small - back * shadow_dx, y + small - back * shadow_dy), fill=highlight)


def _draw_river(image: Image.Image, rng: np.random.Generator) -> None:
    """A winding river with muddy banks across the image."""
    path = _random_path(rng, image.width, bends=int(rng.integers(1, 3)))
    width = int(rng.integers(6, 22))
    draw = ImageDraw.Draw(image)
    draw.line(path, fill=_jitter(rng, (120, 110, 80), 12), width=width + 4, joint="curve")
    draw.line(path, fill=_jitter(rng, (40, 80, 110), 16), width=width, joint="curve")


def _draw_road(image: Image.Image, rng: np.random.Generator, colour: RGB) -> None:
    """A road or track across the image."""
    path = _random_path(rng, image.width, bends=int(rng.integers(0, 2)))
    ImageDraw.Draw(image).line(path, fill=_jitter(rng, colour, 10), width=int(rng.integers(2, 8)), joint="curve")


# --------------------------------------------------------------------------------------------------
# Aerial tiles. Each drawer samples its scale, palette and optional features per tile, so that two
# tiles of one class are no closer to each other than two real scenes of that class would be.

_FIELD_SEASONS: Final[tuple[tuple[RGB, ...], ...]] = (
    ((118, 142, 60), (92, 120, 52), (150, 170, 80), (70, 110, 50), (170, 150, 90)),  # spring, mostly green
    ((196, 180, 104), (210, 196, 130), (170, 150, 90), (118, 142, 60), (190, 160, 80)),  # summer, ripe grain
    ((140, 110, 70), (120, 96, 62), (160, 130, 90), (100, 84, 60), (118, 142, 60)),  # autumn, ploughed
    ((160, 168, 80), (196, 180, 104), (140, 110, 70), (92, 120, 52), (210, 200, 90)),  # mixed, rapeseed
)


def _draw_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """Patchwork of crop parcels with furrow stripes and hedgerows, maybe a road, river or woodlot."""
    canvas_side = _canvas_size(size)
    palette = _FIELD_SEASONS[rng.integers(len(_FIELD_SEASONS))]
    rgb = np.zeros((canvas_side, canvas_side, 3), np.float32)
    # Parcel size sets the zoom: from many small plots to two or three huge ones.
    min_parcel = int(rng.integers(24, 100))
    pending = [(0, 0, canvas_side, canvas_side)]
    parcels: list[tuple[int, int, int, int]] = []
    while pending:
        x0, y0, x1, y1 = pending.pop()
        width, height = x1 - x0, y1 - y0
        if max(width, height) < 2 * min_parcel or (len(parcels) > 2 and rng.random() < 0.2):
            parcels.append((x0, y0, x1, y1))
            continue
        if width >= height:
            cut = x0 + int(rng.integers(min_parcel, width - min_parcel + 1))
            pending += [(x0, y0, cut, y1), (cut, y0, x1, y1)]
        else:
            cut = y0 + int(rng.integers(min_parcel, height - min_parcel + 1))
            pending += [(x0, y0, x1, cut), (x0, cut, x1, y1)]
    yy, xx = np.mgrid[0:canvas_side, 0:canvas_side].astype(np.float32)
    period_low = rng.uniform(2.5, 6.0)
    for x0, y0, x1, y1 in parcels:
        colour = np.array(_jitter(rng, palette[rng.integers(len(palette))], 18), np.float32)
        period = rng.uniform(period_low, period_low * 2.5)
        # Furrows follow one of the parcel's sides, as ploughing does.
        coordinate = xx[y0:y1, x0:x1] if rng.random() < 0.5 else yy[y0:y1, x0:x1]
        stripes = np.sin(2 * np.pi * coordinate / period + rng.uniform(0, 2 * np.pi))
        rgb[y0:y1, x0:x1] = colour * (1 + rng.uniform(0.0, 0.25) * stripes)[..., None]
    # Clods and stubble: real furrows are not smooth along their length (perfectly smooth ones read as smeared).
    rgb *= (1 + 0.06 * rng.standard_normal((canvas_side, canvas_side), dtype=np.float32))[..., None]
    hedge = np.array(_jitter(rng, (60, 80, 40), 12), np.float32)
    hedge_width = int(rng.integers(0, 4))
    for x0, y0, x1, y1 in parcels:
        if rng.random() < 0.7:
            rgb[y0:y0 + hedge_width, x0:x1] = hedge
            rgb[y0:y1, x0:x0 + hedge_width] = hedge
    moisture = _fractal_noise(rng, canvas_side, int(rng.integers(2, 6)))
    rgb *= (1 + rng.uniform(0.1, 0.5) * (moisture - 0.5))[..., None]
    canvas = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    if rng.random() < 0.35:
        woodlot = _fractal_noise(rng, canvas_side, 3, octaves=2) > rng.uniform(0.6, 0.8)
        _draw_crowns(canvas, rng, int(woodlot.mean() * 4000), (3.0, 6.0), (50, 90, 44), mask=woodlot)
    if rng.random() < 0.3:
        _draw_river(canvas, rng)
    if rng.random() < 0.4:
        _draw_road(canvas, rng, (150, 146, 136))
    tile = _rotate_and_crop(canvas, rng.uniform(0, 360), size)
    return _finish(np.asarray(tile, np.float32), rng, grain=4.0)


_FOREST_TYPES: Final[tuple[tuple[RGB, RGB, RGB], ...]] = (
    # (canopy floor dark, canopy floor light, crown colour)
    ((34, 62, 30), (88, 120, 56), (50, 96, 44)),  # deciduous, summer
    ((20, 40, 32), (50, 80, 60), (30, 66, 48)),  # conifer, blue-green
    ((70, 50, 24), (150, 110, 50), (170, 110, 40)),  # autumn
    ((40, 70, 30), (120, 140, 60), (110, 140, 50)),  # young, light green
)


def _draw_forest(rng: np.random.Generator, size: int) -> np.ndarray:
    """Clumpy canopy noise with shaded tree crowns, clearings, and maybe a track or a river."""
    floor_dark, floor_light, crown_colour = _FOREST_TYPES[rng.integers(len(_FOREST_TYPES))]
    canopy = _fractal_noise(rng, size, int(rng.integers(2, 8)))
    dark = np.array(_jitter(rng, floor_dark, 10), np.float32)
    light = np.array(_jitter(rng, floor_light, 16), np.float32)
    rgb = dark + canopy[..., None] * (light - dark)
    clearing_noise = _fractal_noise(rng, size, int(rng.integers(2, 5)), octaves=3)
    clearing = clearing_noise < rng.uniform(0.0, 0.5)
    ground = np.array(_jitter(rng, ((150, 140, 90), (110, 130, 70), (170, 150, 120))[rng.integers(3)], 20), np.float32)
    rgb[clearing] = ground * (0.85 + 0.3 * canopy[clearing, None])
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    # Crown size sets the zoom: small dense crowns seen from high up, or a few big ones up close.
    radius = rng.uniform(2.0, 12.0)
    density = rng.uniform(0.4, 1.2)
    crown_count = int(density * size * size / (radius * radius * 2.2))
    crowns_allowed = ~clearing | (rng.random(clearing.shape) < 0.08)
    _draw_crowns(image, rng, crown_count, (radius * 0.7, radius * 1.3), _jitter(rng, crown_colour, 14),
                 mask=crowns_allowed)
    if rng.random() < 0.5:
        # Mixed stand: a second species scattered over the first.
        second = _FOREST_TYPES[rng.integers(len(_FOREST_TYPES))][2]
        _draw_crowns(image, rng, int(crown_count * rng.uniform(0.1, 0.5)), (radius * 0.5, radius * 1.5),
                     _jitter(rng, second, 14), mask=crowns_allowed)
    if rng.random() < 0.3:
        _draw_river(image, rng)
    elif rng.random() < 0.4:
        _draw_road(image, rng, (140, 124, 96))
    return _finish(np.asarray(image, np.float32), rng, grain=5.0)


def _draw_water(rng: np.random.Generator, size: int) -> np.ndarray:
    """Blue depth gradient with ripples, a wavy shoreline with a sand band and vegetated land."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gradient_angle = rng.uniform(0, 2 * np.pi)
    depth = (np.cos(gradient_angle) * xx + np.sin(gradient_angle) * yy)
    depth = (depth - depth.min()) / (depth.max() - depth.min())
    deep = np.array(_jitter(rng, (20, 52, 96), 14), np.float32)
    shallow = np.array(_jitter(rng, ((52, 120, 150), (60, 150, 140), (70, 100, 110))[rng.integers(3)], 22), np.float32)
    rgb = deep + depth[..., None] * (shallow - deep)
    ripple_angle = rng.uniform(0, np.pi)
    wavelength = rng.uniform(0.02, 0.1)
    warp = _fractal_noise(rng, size, int(rng.integers(3, 6)), octaves=3)
    ripples = np.sin(2 * np.pi * (np.cos(ripple_angle) * xx + np.sin(ripple_angle) * yy) / wavelength + 6 * warp)
    rgb *= (1 + rng.uniform(0.0, 0.15) * ripples)[..., None]
    # Shoreline: a random line displaced by noise; the positive side is land.
    shore_angle = rng.uniform(0, 2 * np.pi)
    shore_offset = rng.uniform(0.1, 0.6)
    along = np.cos(shore_angle) * (xx - 0.5) + np.sin(shore_angle) * (yy - 0.5)
    wobble = _fractal_noise(rng, size, int(rng.integers(2, 5)), octaves=3)
    signed = along - (0.5 - shore_offset) + rng.uniform(0.05, 0.3) * (wobble - 0.5)
    sand_width = rng.uniform(0.0, 0.06)
    sand = (signed > 0) & (signed < sand_width)
    land = signed >= sand_width
    rgb[sand] = np.array(_jitter(rng, (206, 190, 150), 14), np.float32)
    vegetation = _fractal_noise(rng, size, int(rng.integers(4, 14)), octaves=3)
    land_low = np.array(_jitter(rng, (50, 78, 40), 12), np.float32)
    land_high = np.array(_jitter(rng, ((130, 140, 80), (170, 150, 100), (90, 120, 60))[rng.integers(3)], 20), np.float32)
    rgb[land] = land_low + vegetation[land, None] * (land_high - land_low)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        _draw_crowns(image, rng, int(rng.integers(20, 300)), (2.0, rng.uniform(3.0, 7.0)), (50, 90, 44), mask=land)
    draw = ImageDraw.Draw(image)
    water_pixels = np.argwhere(signed < -0.05)
    for _ in range(int(rng.integers(0, 5))):
        if len(water_pixels) == 0:
            break
        y, x = water_pixels[rng.integers(len(water_pixels))]
        length = rng.uniform(3, 10)
        draw.rectangle((x, y, x + length, y + 2), fill=(235, 235, 230))
        draw.line((x - 2 * length, y + 1, x, y + 1), fill=(150, 185, 200), width=1)
    return _finish(np.asarray(image, np.float32), rng, grain=3.0)


_ROOF_COLOURS: Final[tuple[RGB, ...]] = (
    (168, 72, 52), (120, 120, 126), (96, 70, 60), (190, 110, 80), (210, 206, 196), (70, 80, 96),
)


def _draw_apartment_block(draw: ImageDraw.ImageDraw, rng: np.random.Generator, block: tuple[int, int, int, int],
                          shadow: np.ndarray) -> None:
    """One large flat-roofed building with rooftop units, beside a car park, filling a block."""
    x0, y0, x1, y1 = block
    draw.rectangle(block, fill=_jitter(rng, (90, 90, 92), 10))
    for x in range(x0 + 2, x1 - 3, 5):
        for y in range(y0 + 2, y1 - 3, 9):
            if rng.random() < 0.5:
                draw.rectangle((x, y, x + 3, y + 2), fill=_ROOF_COLOURS[rng.integers(len(_ROOF_COLOURS))])
    split = x0 + int((x1 - x0) * rng.uniform(0.3, 0.6))
    building = (split, y0 + 3, x1 - 3, y1 - 3)
    if building[2] - building[0] < 6 or building[3] - building[1] < 6:
        return
    draw.rectangle((building[0] + 2 * shadow[0], building[1] + 2 * shadow[1],
                    building[2] + 2 * shadow[0], building[3] + 2 * shadow[1]), fill=(30, 32, 30))
    draw.rectangle(building, fill=_jitter(rng, (186, 184, 178), 20))
    for _ in range(int(rng.integers(1, 5))):
        ux, uy = rng.uniform(building[0], building[2] - 4), rng.uniform(building[1], building[3] - 4)
        draw.rectangle((ux, uy, ux + 4, uy + 3), fill=(120, 122, 124))


def _draw_residential(rng: np.random.Generator, size: int) -> np.ndarray:
    """Grid of roads with blocks of roof rectangles casting shadows, gardens, trees and pools."""
    canvas_side = _canvas_size(size)
    garden = _fractal_noise(rng, canvas_side, int(rng.integers(4, 10)), octaves=3)
    lawn_low = np.array(_jitter(rng, ((70, 100, 50), (120, 110, 70), (90, 90, 80))[rng.integers(3)], 12), np.float32)
    lawn_high = np.array(_jitter(rng, (130, 150, 90), 16), np.float32)
    rgb = lawn_low + garden[..., None] * (lawn_high - lawn_low)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    road_colour = _jitter(rng, (112, 112, 108), 20)
    # House size sets the zoom; the roof palette is narrowed to a few local favourites.
    house_scale = rng.uniform(0.8, 2.2)
    road_width = max(3, int(rng.uniform(3, 7) * house_scale))
    block_w, block_h = (int(v * house_scale) for v in rng.integers(34, 80, size=2))
    local_roofs = [_ROOF_COLOURS[i] for i in rng.choice(len(_ROOF_COLOURS), size=int(rng.integers(2, 5)), replace=False)]
    house_gap = int(rng.integers(2, 9))
    shadow = np.array(rng.uniform(1.0, 3.0, size=2) * house_scale * np.sign(rng.uniform(-1, 1, size=2)))
    tree_fraction = rng.uniform(0.0, 0.6)
    pool_fraction = rng.uniform(0.0, 0.4)
    # Some tiles sit at the edge of town: blocks beyond a random line stay undeveloped.
    edge_angle = rng.uniform(0, 2 * np.pi)
    edge_offset = rng.uniform(0.1, 0.4) * canvas_side if rng.random() < 0.4 else float(canvas_side)
    apartment_fraction = rng.choice([0.0, rng.uniform(0.2, 0.8)])
    for block_x in range(0, canvas_side, block_w):
        for block_y in range(0, canvas_side, block_h):
            inner = (block_x + road_width, block_y + road_width, block_x + block_w, block_y + block_h)
            centre_along_edge = (np.cos(edge_angle) * (block_x + block_w / 2 - canvas_side / 2)
                                 + np.sin(edge_angle) * (block_y + block_h / 2 - canvas_side / 2))
            if rng.random() < 0.12 or centre_along_edge > edge_offset:
                continue  # a park or undeveloped block: lawn only, trees come later
            if rng.random() < apartment_fraction:
                _draw_apartment_block(draw, rng, inner, shadow)
                continue
            house_w = max(5, int(rng.integers(8, 16) * house_scale))
            house_h = max(5, int(rng.integers(8, 14) * house_scale))
            for x in range(inner[0] + 2, inner[2] - house_w, house_w + house_gap):
                for y in (inner[1] + 2, inner[3] - house_h - 2):
                    if y < inner[1] or rng.random() < 0.15:
                        continue
                    roof = _jitter(rng, local_roofs[rng.integers(len(local_roofs))], 16)
                    box = (x, y, x + house_w, y + house_h)
                    draw.rectangle((box[0] + shadow[0], box[1] + shadow[1], box[2] + shadow[0], box[3] + shadow[1]),
                                   fill=(40, 44, 36))
                    draw.rectangle(box, fill=roof)
                    # Gable roofs: one slope catches the sun, the other is darker.
                    darker = tuple(int(c * 0.78) for c in roof)
                    draw.rectangle((box[0], (box[1] + box[3]) // 2, box[2], box[3]), fill=darker)
                    if rng.random() < pool_fraction:
                        pool_y = (box[3] + 3) if y == inner[1] + 2 else (box[1] - 3 - 3 * house_scale)
                        draw.rectangle((x + 1, pool_y, x + 1 + 4 * house_scale, pool_y + 3 * house_scale),
                                       fill=(80, 190, 220))
    for block_x in range(0, canvas_side, block_w):
        draw.rectangle((block_x, 0, block_x + road_width - 1, canvas_side), fill=road_colour)
    for block_y in range(0, canvas_side, block_h):
        draw.rectangle((0, block_y, canvas_side, block_y + road_width - 1), fill=road_colour)
    tree_count = int(tree_fraction * canvas_side * canvas_side / (30 * house_scale * house_scale))
    _draw_crowns(image, rng, tree_count, (1.5 * house_scale, 3.5 * house_scale), (50, 92, 44))
    tile = _rotate_and_crop(image, rng.uniform(0, 360), size)
    return _finish(np.asarray(tile, np.float32), rng, grain=4.0)


TILE_DRAWERS: Final[dict[str, Callable[[np.random.Generator, int], np.ndarray]]] = {
    "field": _draw_field,
    "forest": _draw_forest,
    "water": _draw_water,
    "residential": _draw_residential,
}


# --------------------------------------------------------------------------------------------------
# Out-of-place images: content chosen to be far from any aerial texture.


def _draw_document(rng: np.random.Generator, size: int) -> np.ndarray:
    """A printed page with a title, paragraphs of text lines and a table, lying on a wooden desk."""
    desk = Image.new("RGB", (size, size), _jitter(rng, (110, 72, 44), 8))
    draw = ImageDraw.Draw(desk)
    for y in range(0, size, 9):
        draw.line((0, y, size, y + 3), fill=_jitter(rng, (92, 60, 36), 6))
    margin = int(size * 0.1)
    page = (margin, margin // 2, size - margin, size - margin // 2)
    draw.rectangle(page, fill=(238, 236, 228))
    x_left, x_right = page[0] + 10, page[2] - 10
    y = page[1] + 10
    draw.rectangle((x_left + 20, y, x_right - 20, y + 6), fill=(20, 20, 24))
    y += 16
    while y < page[3] - 12:
        if rng.random() < 0.08:
            # A small table: ruled rows and column separators.
            rows = int(rng.integers(2, 4))
            for row in range(rows + 1):
                draw.line((x_left, y + row * 7, x_right, y + row * 7), fill=(60, 60, 60))
            for column in np.linspace(x_left, x_right, 4):
                draw.line((column, y, column, y + rows * 7), fill=(60, 60, 60))
            y += rows * 7 + 8
            continue
        x = x_left + (8 if rng.random() < 0.2 else 0)
        line_end = x_right - int(rng.integers(0, 40))
        while x < line_end:
            word = int(rng.integers(4, 18))
            draw.rectangle((x, y, min(x + word, line_end), y + 3), fill=(34, 34, 40))
            x += word + 3
        y += 7
    return np.asarray(desk)


def _draw_living_room(rng: np.random.Generator, size: int) -> np.ndarray:
    """A bright indoor scene of large flat shapes: wall, floorboards, window, sofa, picture and lamp."""
    room = Image.new("RGB", (size, size), _jitter(rng, (226, 214, 190), 6))
    draw = ImageDraw.Draw(room)
    floor_top = int(size * 0.68)
    draw.rectangle((0, floor_top, size, size), fill=_jitter(rng, (176, 128, 84), 8))
    for x in range(0, size, 24):
        draw.line((x, floor_top, x - 30, size), fill=(150, 106, 66), width=2)
    window = (int(size * 0.08), int(size * 0.1), int(size * 0.4), int(size * 0.5))
    draw.rectangle(window, fill=(250, 250, 252), outline=(255, 255, 255), width=4)
    draw.line(((window[0] + window[2]) // 2, window[1], (window[0] + window[2]) // 2, window[3]), fill=(255, 255, 255), width=3)
    sofa_colour = _jitter(rng, (60, 110, 180), 10)
    draw.rectangle((int(size * 0.45), int(size * 0.45), int(size * 0.95), int(size * 0.75)), fill=sofa_colour)
    draw.rectangle((int(size * 0.42), int(size * 0.55), int(size * 0.5), int(size * 0.8)), fill=sofa_colour)
    draw.rectangle((int(size * 0.55), int(size * 0.12), int(size * 0.85), int(size * 0.35)),
                   fill=(232, 80, 60), outline=(40, 30, 20), width=3)
    draw.ellipse((int(size * 0.08), int(size * 0.6), int(size * 0.24), int(size * 0.76)), fill=(250, 220, 90))
    return np.asarray(room)


def _draw_test_card(rng: np.random.Generator, size: int) -> np.ndarray:
    """Broadcast colour bars with a grey ramp and a centre circle: synthetic, saturated, flat."""
    bars: tuple[RGB, ...] = ((192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0),
                             (192, 0, 192), (192, 0, 0), (0, 0, 192))
    card = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(card)
    bar_width = size / len(bars)
    for index, colour in enumerate(bars):
        draw.rectangle((index * bar_width, 0, (index + 1) * bar_width, size * 0.7), fill=colour)
    ramp = np.linspace(16, 235, size).astype(np.uint8)
    card.paste(Image.fromarray(np.tile(np.repeat(ramp[None, :, None], 3, axis=2), (size - int(size * 0.7), 1, 1))),
               (0, int(size * 0.7)))
    radius = size * rng.uniform(0.22, 0.3)
    centre = size / 2
    draw.ellipse((centre - radius, centre - radius, centre + radius, centre + radius), outline=(255, 255, 255), width=3)
    return np.asarray(card)


OUT_OF_PLACE_DRAWERS: Final[dict[str, Callable[[np.random.Generator, int], np.ndarray]]] = {
    "document": _draw_document,
    "living_room": _draw_living_room,
    "test_card": _draw_test_card,
}
