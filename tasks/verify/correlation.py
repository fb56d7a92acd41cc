"""The correlation stage, for pairs the keypoints reject: phase correlation of high-passed grey thumbnails,
shifted at the same scale and zoomed by each of `CORRELATION_ZOOMS` either way, proposes placements, and the
normalised cross-correlation of the aligned overlap accepts one.

Keypoints at a small working size miss what neighbouring aerial tiles share most often: a 2x zoom (the zoomed
tile's ground is a quarter of the other's, a few dozen keypoints) and a thin strip along an edge (inside ORB's
border margin). A strip too thin for phase correlation to single out is found by searching every shift
(`tasks.verify.placements.search_placements`). It assumes no rotation, as for tiles cut from one mosaic; rotated
and mirrored copies are the keypoints' job. Measurements behind the constants: docs/VERIFICATION.md,
"Correlation".
"""

import itertools
import math
from collections.abc import Callable

import cv2
import numba
import numpy as np

from tasks.config import VerificationConfig
from tasks.geometry import WITHIN_SHARE, shares, to_unit_map
from tasks.schema import Check
from tasks.verify.agreement import PLACEMENT_GRID, detail_agreement
from tasks.verify.features import ImageFeatures
from tasks.verify.placements import overlap_area, overlap_correlation, search_placements
from tasks.verify.thumbnails import PHASE_LEVELS, THUMBNAIL_SIDE, detail_of_each, views
from tasks.verify.verdict import Reason, Stage, Verification

# A whitened correlation surface normalised to sum 1 peaks at this height or more where two images share ground:
# on the benchmark every accepted placement peaked at 0.043 or more, and 82 % of those tried for rejected pairs
# below 0.035. The normalised cross-correlation that decides is computed only above it, which saves its cost.
MIN_PEAK: float = 0.035
# Smallest aligned overlap a correlation match may rest on, as a share of the thumbnail's area (0.1: 1,638 px, so
# a zoomed view must lie at least 40 % inside the wider tile).
MIN_OVERLAP: float = 0.1
# A placement whose surface peaked at least this high (share of its sum) is worth a second look: accepted if its
# median cell correlates at `min_correlation` (strong detail that one image alone has, such as a watermark stamped
# on a copy, pulls the whole overlap's correlation down but not the median cell's); failing that, the pair gets the
# finer keypoint pass (`tasks.verify.cascade`).
SECOND_LOOK_PEAK: float = 0.05
COSINES = np.cos(2 * np.pi * np.arange(PHASE_LEVELS) / PHASE_LEVELS).astype(np.float32)
SINES = np.sin(2 * np.pi * np.arange(PHASE_LEVELS) / PHASE_LEVELS).astype(np.float32)


@numba.njit(nogil=True, cache=True)
def packed_cross_power(
    fixed_phases: np.ndarray, moving_phases: np.ndarray, cosines: np.ndarray, sines: np.ndarray
) -> np.ndarray:
    """The whitened cross-power spectrum of two views from their phases (`spectrum_phases`, the half spectrum of a
    square canvas of even side), packed as OpenCV's inverse real transform reads it (CCS: its first and last columns
    hold the real sequences of the spectrum's first and middle columns, the others real and imaginary parts side
    by side).

    Unit numbers multiply by adding phases: each coefficient is the unit number at the difference of the two
    phases, modulo a turn. Packed here and inverted by OpenCV, a surface costs about half of scipy's irfft2 of
    the complex spectrum, and none of it holds the GIL."""
    rows, half = fixed_phases.shape
    columns, levels = 2 * (half - 1), cosines.size
    packed = np.empty((rows, columns), np.float32)
    for row in range(rows):
        for column in range(half):
            level = (np.int32(fixed_phases[row, column]) - np.int32(moving_phases[row, column])) % levels
            if 0 < column < half - 1:
                packed[row, 2 * column - 1], packed[row, 2 * column] = cosines[level], sines[level]
                continue
            # The first and middle columns transform real sequences: CCS keeps the upper half of each, and the
            # imaginary parts of its two real ends not at all.
            target = 0 if column == 0 else columns - 1
            if row == 0 or row == rows // 2:
                packed[0 if row == 0 else rows - 1, target] = cosines[level]
            elif row < rows // 2:
                packed[2 * row - 1, target], packed[2 * row, target] = cosines[level], sines[level]
    return packed


def _align(
    fixed: np.ndarray, fixed_phases: np.ndarray, moving: np.ndarray, moving_phases: np.ndarray,
    detail: Callable[[np.ndarray], np.ndarray], min_area: float,
) -> tuple[float, int, float, tuple[int, int]]:
    """Where phase correlation places the view `moving` over the view `fixed` (grey, with the phases of their
    details' spectra): the normalised cross-correlation of their details' overlap (`overlap_correlation`, details
    from `detail`) and its area (pixels), of the placement that correlates best (the largest of equals) among those
    overlapping by at least `min_area` (-1 and 0 if none), the height of the correlation surface's peak as a share
    of its sum, and where `moving`'s top-left corner lies in `fixed` (dy, dx)."""
    # The inverse transform divides by its size, so that the surface sums to 1.
    surface = cv2.idft(packed_cross_power(fixed_phases, moving_phases, COSINES, SINES),
                       flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    peak_y, peak_x = divmod(int(surface.argmax()), THUMBNAIL_SIDE)
    peak = float(surface[peak_y, peak_x])
    best = (-1.0, 0, peak, (0, 0))
    if peak < MIN_PEAK:
        return best
    # A circular correlation cannot tell a shift from that shift minus the canvas size: try both on each axis.
    for dy, dx in itertools.product((peak_y, peak_y - THUMBNAIL_SIDE), (peak_x, peak_x - THUMBNAIL_SIDE)):
        area = overlap_area(fixed, moving, dy, dx)
        if area >= max(min_area, 4):
            correlation = overlap_correlation(detail(fixed), detail(moving), dy, dx)
            # Kept even at -1 (a half failed): the placement itself is what a strong peak asks to check further.
            if (correlation, area) > best[:2]:
                best = (correlation, area, peak, (dy, dx))
    return best


def _zoom_label(zoom: float) -> str:
    return f"zoom{zoom:.2g}x"


def _placement_map(
    shift: tuple[int, int], moving: np.ndarray, fixed_is_a: bool, a: ImageFeatures, b: ImageFeatures
) -> np.ndarray:
    """The map (3 x 3) from a's thumbnail to b's of a placement: the view `moving` (the other image's thumbnail,
    perhaps shrunk) with its top-left corner at `shift` (dy, dx) in the fixed image's thumbnail."""
    dy, dx = shift
    if fixed_is_a:
        zoom = b.thumbnail.shape[1] / moving.shape[1]
        return np.array([[zoom, 0.0, -zoom * dx], [0.0, zoom, -zoom * dy], [0.0, 0.0, 1.0]])
    zoom = a.thumbnail.shape[1] / moving.shape[1]
    return np.array([[1.0 / zoom, 0.0, dx], [0.0, 1.0 / zoom, dy], [0.0, 0.0, 1.0]])


def correlate(a: ImageFeatures, b: ImageFeatures, config: VerificationConfig) -> tuple[Verification, float]:
    """`correlate_pair`; also the highest peak of the correlation surfaces (0 if none)."""
    zooms = a.correlation_zooms
    if b.correlation_zooms != zooms:
        raise ValueError(f"{b.path}: features made for correlation zooms {b.correlation_zooms}, not {zooms}")
    if not len(a.phases) or not len(b.phases):
        return Verification(stage=Stage.CORRELATION, reason=Reason.TOO_SMALL), 0.0
    min_area = MIN_OVERLAP * THUMBNAIL_SIDE**2
    views_a, views_b = views(a.thumbnail, zooms), views(b.thumbnail, zooms)
    # A view's fine detail is taken only for a placement worth checking, and once per pair.
    detail = detail_of_each()

    # (zoom of b relative to a, whether a's view is the one kept whole, that view and its phases, the view placed
    # over it and its phases)
    hypotheses = [(1.0, True, views_a[0], a.phases[0], views_b[0], b.phases[0])]
    for level, zoom in enumerate(zooms, start=1):
        hypotheses.append((zoom, True, views_a[0], a.phases[0], views_b[level], b.phases[level]))
        hypotheses.append((1.0 / zoom, False, views_b[0], b.phases[0], views_a[level], a.phases[level]))
    best_correlation, best_zoom, best_map, highest_peak = -1.0, 1.0, np.eye(3), 0.0
    evidence = Check.PHASE_CORRELATION
    strongest: tuple[float, float, np.ndarray] | None = None  # peak, zoom, map of a placement
    for zoom, fixed_is_a, fixed, fixed_phases, moving, moving_phases in hypotheses:
        correlation, area, peak, shift = _align(fixed, fixed_phases, moving, moving_phases, detail, min_area)
        highest_peak = max(highest_peak, peak)
        placement = _placement_map(shift, moving, fixed_is_a, a, b)
        if correlation > best_correlation:
            best_correlation, best_zoom, best_map = correlation, zoom, placement
        if area and (strongest is None or peak > strongest[0]):
            strongest = (peak, zoom, placement)
    if best_correlation < config.min_correlation:
        correlation, _, shift = search_placements(views_a[0], views_b[0], detail, min_area)
        if correlation > best_correlation:
            best_correlation, best_zoom, evidence = correlation, 1.0, Check.SHIFT_SEARCH
            best_map = _placement_map(shift, views_b[0], True, a, b)

    def rejected(reason: Reason, correlation: float = best_correlation) -> tuple[Verification, float]:
        return Verification(stage=Stage.CORRELATION, reason=reason, correlation=correlation), highest_peak

    no_inliers = np.empty((0, 2), np.float32)
    if best_correlation < config.min_correlation:
        # Strong detail that one image alone has (a watermark stamped on a copy of a smooth scene) can pull the
        # whole overlap's correlation down. A placement with a peak worth a second look (`SECOND_LOOK_PEAK`) is
        # accepted if its overlap correlates at `min_correlation` in the median cell instead.
        if strongest is None:
            # No placement overlapped enough under a peak worth checking: nothing was measured, unless the search
            # found one.
            return rejected(Reason.NO_CORRELATION_PEAK, math.nan if best_correlation == -1.0 else best_correlation)
        if strongest[0] < SECOND_LOOK_PEAK:
            return rejected(Reason.LOW_CORRELATION)
        agreement = detail_agreement(strongest[2], no_inliers, a, b, PLACEMENT_GRID, detail)
        if agreement < config.min_correlation:
            return rejected(Reason.LOW_MEDIAN_CELL, agreement)
        best_correlation, best_zoom, best_map, evidence = agreement, strongest[1], strongest[2], Check.MEDIAN_CELL
    # Correlated through and through, not on one caption or logo that both carry at the same place.
    elif detail_agreement(best_map, no_inliers, a, b, PLACEMENT_GRID, detail) < config.min_detail_agreement:
        return rejected(Reason.DETAIL_DISAGREES)
    a_to_b = to_unit_map(best_map, a.thumbnail.shape[::-1], b.thumbnail.shape[::-1])
    share_a, share_b = shares(a_to_b)
    # A zoom label already says that one image shows part of the other: only a shift is added.
    parts = ([] if best_zoom == 1.0 else [_zoom_label(best_zoom)]) + (["shift"] if max(share_a, share_b) <
                                                                      WITHIN_SHARE else [])
    verdict = Verification(stage=Stage.CORRELATION, evidence=evidence, correlation=best_correlation,
                           transform="+".join(parts) if parts else "same", share_a=share_a, share_b=share_b,
                           a_to_b=a_to_b)
    return verdict, highest_peak


def correlate_pair(a: ImageFeatures, b: ImageFeatures, config: VerificationConfig = VerificationConfig()
                   ) -> Verification:
    """Decide an unrotated pair by correlating thumbnails: b shifted over a at the same scale, or zoomed by one of
    the features' `correlation_zooms` either way. The best alignment is accepted when its high-passed overlap
    correlates at `min_correlation` or more over at least `MIN_OVERLAP` of the thumbnail's area, and each half of
    the overlap at `MIN_HALF` or more. If phase correlation proposes no such alignment, every shift at the same
    scale is searched (`search_placements`: a thin strip), and the best accepted at `SEARCH_MIN_CORRELATION` if
    distinct; failing that, the placement of the highest peak, if it reaches `SECOND_LOOK_PEAK`, when its median
    cell correlates at `min_correlation` (`detail_agreement`). An accepted placement must also agree at
    `min_detail_agreement` cell by cell. `correlation` is the deciding correlation and `inliers` 0. Both images'
    features must have been extracted with the same `correlation_zooms`."""
    return correlate(a, b, config)[0]
