"""The detail-agreement check: a match, from keypoints or a correlation, is confirmed on what its evidence did not
use. Aligned as found, the thumbnails' fine detail must correlate away from the keypoint inliers, cell by cell,
over most of the shared region: a caption or logo printed at the same place on different images gives a perfect fit
of its own. The same cells accept a strongly peaked placement whose whole overlap correlates too weakly because of
strong detail in one image alone, such as a watermark stamped on a copy.

Measurements behind the constants: docs/VERIFICATION.md, "Detail agreement".
"""

import math
from collections.abc import Callable

import cv2
import numpy as np

from tasks.verify.features import ImageFeatures
from tasks.verify.thumbnails import FILL_FLATNESS, FILL_WINDOW, fine_detail, flat, near

# The thumbnails' fine detail is correlated, as aligned, over the shared region outside the keypoint inliers' hull,
# widened by HULL_MARGIN thumbnail pixels (about ORB's patch radius), in each cell of a square grid holding
# MIN_CELL_PIXELS or more of it, and the median cell decides. A caption, logo or info band at the same place in
# different images gives a fit of the same kind as a copy's, with every inlier on the overlay, and can dominate the
# correlation of smooth scenes; away from it such pairs do not correlate. A keypoint fit's grid has KEYPOINT_GRID
# cells a side: the hull already leaves the overlay out. A correlation's placement has no inliers to leave out, and
# a line of text across the middle touches half the cells of a 4 x 4 grid (a translucent watermark on smooth
# fields: 0.38 at most, against 0.48 for the weakest true match) but a third of PLACEMENT_GRID's (0.06, against
# 0.33).
HULL_MARGIN: int = 6
MIN_CELL_PIXELS: int = 16
KEYPOINT_GRID: int = 4
PLACEMENT_GRID: int = 6
# Inliers whose widened hull leaves less than this share of the shared region are evidence enough themselves.
COVERED_SHARE: float = 0.1
_HULL_WINDOW = np.ones((2 * HULL_MARGIN + 1,) * 2, np.uint8)
_SEAM_WINDOW = np.ones((7, 7), np.uint8)


def area_scale(matrix: np.ndarray) -> float:
    """How much the affine `matrix` (2 x 3, or its 2 x 2 linear part) scales areas: the determinant, written out
    (a call into LAPACK costs more than the arithmetic)."""
    return abs(float(matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0]))


def cell_sums(values: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Sums of `values` (H x W x C) over the grid cells cut at `rows` and `columns` (boundaries, first to last, each
    cell at least one pixel): an array of (cells down) x (cells across) x C."""
    window = values[rows[0] : rows[-1], columns[0] : columns[-1]].astype(np.float64)
    return np.add.reduceat(np.add.reduceat(window, rows[:-1] - rows[0], axis=0), columns[:-1] - columns[0], axis=1)


def detail_agreement(
    a_to_b: np.ndarray, inlier_points_b: np.ndarray, a: ImageFeatures, b: ImageFeatures, grid: int,
    detail: Callable[[np.ndarray], np.ndarray] = fine_detail,
) -> float:
    """How well the thumbnails' fine detail agrees, aligned by `a_to_b` (thumbnail to thumbnail), over the shared
    region outside the hull of the inliers (b's working frame) and away from any area where both show one flat
    level: the median, over the cells of a `grid` x `grid` grid holding enough of that region, of the cells'
    normalised cross-correlations. 1 when the hull covers all but `COVERED_SHARE` of the shared region; -1 when
    the map leaves almost nothing shared, or when fewer than half of those cells have detail in both images. The
    image showing the shared ground larger is warped onto the other, blurred first if shrunk much. `detail` takes
    the unwarped thumbnail's (`detail_of_each` shares it between the checks of one pair)."""
    hull_points = (inlier_points_b * (b.thumbnail.shape[1] / b.width)).reshape(-1, 1, 2).astype(np.float32)
    scale = area_scale(a_to_b) / a_to_b[2, 2] ** 2
    if scale < 1.0:
        fixed, moving, to_fixed = b.thumbnail, a.thumbnail, a_to_b
    else:
        fixed, moving, to_fixed = a.thumbnail, b.thumbnail, cv2.invert(a_to_b)[1]
        if len(hull_points):
            hull_points = cv2.perspectiveTransform(hull_points, to_fixed)
    shrink = math.sqrt(max(scale, 1.0 / scale))
    if shrink**2 > 1.5:  # shrinking the area to under two thirds aliases: blur by half the shrink factor first
        moving = cv2.GaussianBlur(moving, (0, 0), 0.5 * shrink)
    size = (fixed.shape[1], fixed.shape[0])
    warped = cv2.warpPerspective(moving, to_fixed, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpPerspective(np.ones_like(moving), to_fixed, size, flags=cv2.INTER_NEAREST)
    # The replicated border leaves a seam along the warped image's edge, which the high pass spreads inwards.
    inside = cv2.erode(inside, _SEAM_WINDOW)
    hull = np.zeros(fixed.shape, np.uint8)
    if len(hull_points) >= 3:
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(hull_points).astype(np.int32)), 1)
    hull = cv2.dilate(hull, _HULL_WINDOW)
    region = (inside > 0) & (hull == 0)
    ys, xs = np.nonzero(inside)
    if len(ys) < MIN_CELL_PIXELS * grid**2 or min(np.ptp(ys), np.ptp(xs)) < grid:
        return -1.0
    if np.count_nonzero(region) < COVERED_SHARE * len(ys):
        return 1.0
    # An overlay placed over both (a sticker, a logo, a redaction box) shows one flat level in both, and its rim is
    # the strongest detail around: judge the region away from it, unless that leaves too little (a scene mostly
    # flat, such as still water, is flat and the same in both images of a copy too).
    same = cv2.dilate(cv2.absdiff(fixed, warped), FILL_WINDOW) <= FILL_FLATNESS
    away = region & ~near(flat(fixed) & same)
    if np.count_nonzero(away) >= COVERED_SHARE * len(ys):
        region = away
    first, second = detail(fixed) * region, fine_detail(warped) * region
    values = np.stack([region, first, second, first * first, second * second, first * second], axis=-1)
    rows = np.linspace(ys.min(), ys.max() + 1, grid + 1).astype(int)
    columns = np.linspace(xs.min(), xs.max() + 1, grid + 1).astype(int)
    count, sum_1, sum_2, sum_11, sum_22, sum_12 = np.moveaxis(cell_sums(values, rows, columns), -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        covariance = sum_12 - sum_1 * sum_2 / count
        energy = (sum_11 - sum_1**2 / count) * (sum_22 - sum_2**2 / count)
        correlations = covariance / np.sqrt(energy)
    held = count >= MIN_CELL_PIXELS
    usable = held & (energy > 0)
    # Cells without detail in one image or the other (fill, a black image) say nothing: half must have some.
    return float(np.median(correlations[usable])) if 2 * np.count_nonzero(usable) >= np.count_nonzero(held) else -1.0
