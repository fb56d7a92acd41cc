"""Placements of one thumbnail view over another: the normalised cross-correlation of their overlap, and the
search of every shift for the best distinct one (a strip too thin for phase correlation to single out).

Measurements behind the constants: docs/VERIFICATION.md, "Correlation" and "The every-shift search".
"""

import itertools
import math
from collections.abc import Callable

import cv2
import numba
import numpy as np

from tasks.verify.thumbnails import fine_detail, resized

# Correlation that each half of an aligned overlap (cut across its longer side) must reach too: shared ground
# correlates throughout, while one shared-looking edge (a shoreline, a road) can make a small overlap of different
# scenes correlate on its own.
MIN_HALF: float = 0.5
# A thin strip of shared ground (two tiles cut side by side with a 10 % overlap) correlates strongly where it is,
# but phase correlation of the whole thumbnails buries its peak among the rest's (for 10 % strips of RSSCN7
# tiles, the right placement's peak ranked up to a few hundredth). Pairs that phase correlation does not confirm
# are therefore searched directly (`search_placements`): the normalised cross-correlation of every shift is
# computed on the thumbnails shrunk by SEARCH_SCALE, and the best shift is checked at full thumbnail size if it
# reaches SEARCH_FLOOR there. For 70 such 10 % strips, the right shift reached 0.38 or more at half size (0.53
# or more for 95 % of them); for 1,000 random pairs of different tiles of one class, the best shift reached
# 0.53 or more for 1 %.
SEARCH_SCALE: float = 0.5
SEARCH_FLOOR: float = 0.4
# The correlation that accepts the search's placement: stricter than `min_correlation`, as the search tries
# thousands of placements where phase correlation proposes a few.
SEARCH_MIN_CORRELATION: float = 0.8
# A placement found by that search must be distinct: correlate better by DISTINCT_MARGIN than every placement
# DISTINCT_OFFSET thumbnail pixels away, in 24 directions. Along a straight edge or parallel stripes (a shoreline,
# rows of barns, furrows, the border of a field) the correlation stays as high when shifted along them, so two
# different scenes with such lines can correlate well at many placements; shared ground correlates at one. On
# RSSCN7, three such pairs of different tiles (0.72 to 0.84; one at 64 px) lost at most 0.04 of it 4 pixels away
# in one of these directions (eight directions missed the steep border of a field); the benchmark's three shared
# strips lost 0.23 to 0.37, and 13 strips of 10 % cut from RSSCN7 tiles lost more.
DISTINCT_OFFSET: int = 4
DISTINCT_MARGIN: float = 0.1
_DISTINCT_STEPS = sorted({
    (round(DISTINCT_OFFSET * math.sin(angle)), round(DISTINCT_OFFSET * math.cos(angle)))
    for angle in np.linspace(0.0, 2 * math.pi, 24, endpoint=False)
})


@numba.njit(nogil=True, cache=True)
def normalised_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """The normalised cross-correlation of two 2-D arrays of one shape; -1 if either is flat. Compiled, in two
    passes over the pixels (means, then centred sums in float64): numpy's eight passes hold the GIL between them."""
    rows, columns = first.shape
    mean_first = mean_second = 0.0
    for row in range(rows):
        for column in range(columns):
            mean_first += first[row, column]
            mean_second += second[row, column]
    mean_first, mean_second = mean_first / first.size, mean_second / first.size
    product = energy_first = energy_second = 0.0
    for row in range(rows):
        for column in range(columns):
            centred_first, centred_second = first[row, column] - mean_first, second[row, column] - mean_second
            product += centred_first * centred_second
            energy_first += centred_first * centred_first
            energy_second += centred_second * centred_second
    energy = math.sqrt(energy_first * energy_second)
    return product / energy if energy > 0.0 else -1.0


def overlap_area(fixed: np.ndarray, moving: np.ndarray, dy: int, dx: int) -> int:
    """Pixels in the region `fixed` and `moving` share when `moving`'s top-left corner lies at (dy, dx) in
    `fixed`'s frame (0 when they do not overlap)."""
    rows = min(fixed.shape[0], dy + moving.shape[0]) - max(0, dy)
    return max(0, rows) * max(0, min(fixed.shape[1], dx + moving.shape[1]) - max(0, dx))


def overlap(fixed: np.ndarray, moving: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The regions of `fixed` and `moving` that overlap when `moving`'s top-left corner lies at (dy, dx) in
    `fixed`'s frame; only for placements that overlap (`overlap_area`): bounds below zero would slice from the
    end."""
    top, left = max(0, dy), max(0, dx)
    bottom, right = min(fixed.shape[0], dy + moving.shape[0]), min(fixed.shape[1], dx + moving.shape[1])
    return fixed[top:bottom, left:right], moving[top - dy : bottom - dy, left - dx : right - dx]


def overlap_correlation(fixed: np.ndarray, moving: np.ndarray, dy: int, dx: int, min_half: float = MIN_HALF
                        ) -> float:
    """Normalised cross-correlation of the region both images show when `moving`'s top-left corner lies at
    (dy, dx) in `fixed`'s frame; -1 when either half of that region (cut across its longer side) correlates
    below `min_half`. Shared ground correlates throughout, whereas one strong shared-looking feature (a
    shoreline, a road edge) can make a small overlap of different scenes correlate strongly on its own."""
    region_fixed, region_moving = overlap(fixed, moving, dy, dx)
    whole = normalised_correlation(region_fixed, region_moving)
    if whole < min_half:
        return whole
    axis = 0 if region_fixed.shape[0] >= region_fixed.shape[1] else 1
    middle = region_fixed.shape[axis] // 2
    for half in (slice(0, middle), slice(middle, None)):
        index = (half, slice(None)) if axis == 0 else (slice(None), half)
        if normalised_correlation(region_fixed[index], region_moving[index]) < min_half:
            return -1.0
    return whole


@numba.njit(nogil=True, cache=True)
def _best_normalised_product(
    products: np.ndarray, fixed_sums: np.ndarray, moving_sums: np.ndarray, min_area: float
) -> tuple[float, int, int]:
    """The placement whose entry of `products` (the circular cross-correlation of two details, padded so that no
    shift wraps onto another, indexed [dy mod rows, dx mod columns]) is largest once divided by the root of both
    details' energy inside the overlap, taken from integral images of the squared details (`fixed_sums`,
    `moving_sums`): its normalised cross-correlation and where the moving detail's top-left corner lies in the
    fixed one's frame (dy, dx), among placements overlapping by `min_area` pixels or more with a positive product
    (the first of equals, row by row); -1, 0, 0 if there is none.

    Only the best is needed, so products are compared squared, without a root or a division per placement."""
    padded_rows, padded_columns = products.shape
    fixed_rows, fixed_columns = fixed_sums.shape[0] - 1, fixed_sums.shape[1] - 1
    moving_rows, moving_columns = moving_sums.shape[0] - 1, moving_sums.shape[1] - 1
    best_product, best_energy, best_dy, best_dx = 0.0, 1.0, 0, 0
    for row in range(padded_rows):
        dy = row if row < fixed_rows else row - padded_rows
        top, bottom = max(0, dy), min(fixed_rows, dy + moving_rows)
        if bottom <= top:
            continue
        for column in range(padded_columns):
            product = float(products[row, column])
            if product <= 0.0:
                continue
            dx = column if column < fixed_columns else column - padded_columns
            left, right = max(0, dx), min(fixed_columns, dx + moving_columns)
            if right <= left or (bottom - top) * (right - left) < min_area:
                continue
            fixed_energy = (fixed_sums[bottom, right] - fixed_sums[top, right]
                            - fixed_sums[bottom, left] + fixed_sums[top, left])
            moving_energy = (moving_sums[bottom - dy, right - dx] - moving_sums[top - dy, right - dx]
                             - moving_sums[bottom - dy, left - dx] + moving_sums[top - dy, left - dx])
            energy = fixed_energy * moving_energy
            if energy > 0.0 and product * product * best_energy > best_product * best_product * energy:
                best_product, best_energy, best_dy, best_dx = product, energy, dy, dx
    if best_product == 0.0:
        return -1.0, 0, 0
    return best_product / math.sqrt(best_energy), best_dy, best_dx


def best_shift(fixed: np.ndarray, moving: np.ndarray, min_area: float) -> tuple[float, int, int]:
    """The placement of `moving`'s top-left corner at (dy, dx) in `fixed`'s frame whose overlap, of `min_area`
    pixels or more, gives two details (float32) the highest normalised cross-correlation, and that correlation
    (-1, 0, 0 if none is positive). Details have a mean near zero, so none is removed."""
    padded = (fixed.shape[0] + moving.shape[0], fixed.shape[1] + moving.shape[1])
    spectra = []
    for detail in (fixed, moving):
        canvas = np.zeros(padded, np.float32)
        canvas[: detail.shape[0], : detail.shape[1]] = detail
        # OpenCV's packed real transform takes about half of scipy's time at this size.
        spectra.append(cv2.dft(canvas, nonzeroRows=detail.shape[0]))
    products = cv2.idft(cv2.mulSpectrums(*spectra, 0, conjB=True), flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    return _best_normalised_product(
        products, cv2.integral(fixed * fixed, sdepth=cv2.CV_64F), cv2.integral(moving * moving, sdepth=cv2.CV_64F),
        min_area,
    )


def search_placements(
    fixed: np.ndarray, moving: np.ndarray, detail: Callable[[np.ndarray], np.ndarray], min_area: float
) -> tuple[float, int, tuple[int, int]]:
    """The best placement of the view `moving` over the view `fixed` at the same scale, searched over every shift
    (see `SEARCH_SCALE`): its normalised cross-correlation at full size (`overlap_correlation`) and area, among
    placements overlapping by at least `min_area` pixels, and where `moving`'s top-left corner lies in `fixed`
    (dy, dx); -1 and 0 if none, if it correlates below `SEARCH_MIN_CORRELATION`, or if it is not distinct
    (`DISTINCT_OFFSET`). `detail` gives a view's fine detail."""
    small_fixed, small_moving = resized(fixed, SEARCH_SCALE), resized(moving, SEARCH_SCALE)
    estimate, half_dy, half_dx = best_shift(fine_detail(small_fixed), fine_detail(small_moving),
                                            min_area * SEARCH_SCALE**2)
    if estimate < SEARCH_FLOOR:
        return -1.0, 0, (0, 0)

    # The shift at full size: one of four, give or take the resizing.
    centre_dy, centre_dx = round(half_dy / SEARCH_SCALE), round(half_dx / SEARCH_SCALE)
    best = (-1.0, 0, 0, 0)
    for dy, dx in itertools.product(range(centre_dy - 1, centre_dy + 2), range(centre_dx - 1, centre_dx + 2)):
        area = overlap_area(fixed, moving, dy, dx)
        if area >= max(min_area, 4):
            correlation = overlap_correlation(detail(fixed), detail(moving), dy, dx)
            if correlation > best[0]:
                best = (correlation, area, dy, dx)
    correlation, area, dy, dx = best
    if correlation < SEARCH_MIN_CORRELATION:
        return -1.0, 0, (0, 0)
    nearby = max(
        (normalised_correlation(*overlap(detail(fixed), detail(moving), dy + step_y, dx + step_x))
         for step_y, step_x in _DISTINCT_STEPS if overlap_area(fixed, moving, dy + step_y, dx + step_x) >= 4),
        default=-1.0,
    )
    return (correlation, area, (dy, dx)) if correlation - nearby >= DISTINCT_MARGIN else (-1.0, 0, (0, 0))
