"""Geometric verification of candidate image pairs.

Embedding similarity (fastdup) ranks candidates but cannot tell a crop, rotation or overlapping tile from a
different scene of the same texture. This step settles each candidate pair with local features: ORB keypoints
matched with a ratio test, then a RANSAC fit of a similarity transform (rotation, uniform scale, translation).
Mirror images are handled by also matching against descriptors computed on the horizontally flipped image,
because ORB descriptors are not invariant to reflection.

Keypoints at a small working size miss what neighbouring aerial tiles share most often: a 2x zoom (the zoomed
tile's ground is a quarter of the other's, a few dozen keypoints) and a thin strip along an edge (inside ORB's
border margin). Pairs the keypoints reject are therefore tested once more by correlation (`correlate_pair`): for
a shift at the same scale and for each configured zoom factor in both directions, phase correlation of
high-passed grey thumbnails proposes an alignment, and the normalised cross-correlation of the aligned overlap
accepts it. A strip too thin for phase correlation to single out is found by searching every shift at the same
scale for the best normalised cross-correlation (`_search_placements`), accepted only where it is distinct from
the placements around it. It assumes no rotation, as for tiles cut from one mosaic; rotated and mirrored copies
are the keypoints' job.

Either stage's match is then confirmed on what its evidence did not use (`_detail_agreement`): aligned as found,
the thumbnails' fine detail must correlate away from the keypoint inliers, cell by cell, over most of the shared
region. A caption or logo printed at the same place on different images gives a perfect fit of its own. The same
cells accept a strongly peaked placement whose whole overlap correlates too weakly because of strong detail in
one image alone, such as a watermark stamped on a copy.

Features, including the spectra the correlation needs, are computed once per image at a reduced working size
(`extract_features`) and reused for every pair that image takes part in (`verify_pairs`). They hold only numpy
arrays, so they can be pickled and cached.
`verify_pairs` is a two-pass cascade: the few pairs rejected at the working size but with some consistent
keypoint matches are matched again on keypoints of a larger working image, computed only for those pairs' images
(a heavily cropped and rotated copy can need it), from each image of the pair to the other.
"""

import dataclasses
import itertools
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numba
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import reverse_cuthill_mckee

from tasks.cache import PairCache
from tasks.chunks import ChunkMap, balanced_size, run_here
from tasks.config import VerificationConfig
from tasks.geometry import WITHIN_SHARE, describe, shares, to_unit_map
from tasks.hamming import two_nearest
from tasks.imagestats import (
    DIHEDRAL_VARIANTS, PART_SIGNATURES, PART_WINDOWS, SIGNATURE, STRUCTURE, dihedral_variants, eight_bit,
)
from tasks.ingest import CONTENT_VERSION
from tasks.memory import release_free_memory
from tasks.placement import predicted_overlaps
from tasks.progress import progress
from tasks.schema import Check, Col, PairCol
from tasks.similarity import (
    PAIR_A, PAIR_B, RANK, SIMILARITY, Search, neighbours_by_row, plain_search, reusing_search,
)

# Part of the verification cache's key: change it whenever a change of code (not of settings) changes results.
METHOD_VERSION = "orb-ransac+correlation-17"
# Columns verify_pairs adds to a frame of pairs: the evidence ("" for a rejected pair), the accepting check's score,
# the keypoint inliers, the transform, the two shares and the map between the images (see `Verification`).
EVIDENCE, MATCH_SCORE, INLIERS, TRANSFORM = PairCol.EVIDENCE, "match_score", "inliers", PairCol.TRANSFORM
SHARE_A, SHARE_B, A_TO_B = PairCol.SHARE_A, PairCol.SHARE_B, PairCol.A_TO_B
COLOUR_SIMILARITY = "colour_similarity"

# RANSAC stops early once this sure of its best fit; the iteration cap bounds the time spent on non-matches.
_RANSAC_CONFIDENCE = 0.995
_RANSAC_MAX_ITERATIONS = 2000
# Correlation thumbnails: longest side in pixels, and the Gaussian (in thumbnail pixels) whose blur is subtracted
# to keep fine detail only, so that the smooth shading of fields and water does not correlate between scenes.
_THUMBNAIL_SIDE = 128
_HIGH_PASS_SIGMA = 2.0
# A whitened correlation surface normalised to sum 1 peaks at this height or more where two images share ground:
# on the benchmark every accepted placement peaked at 0.043 or more, and 82 % of those tried for rejected pairs
# below 0.035. The normalised cross-correlation that decides is computed only above it, which saves its cost.
_MIN_PEAK = 0.035
# Fill (see `_detail`): pixels at most _FILL_DARKEST or at least _FILL_LIGHTEST whose grey levels vary by at most
# _FILL_FLATNESS within _FILL_WINDOW_RADIUS pixels. The detail within _FILL_MARGIN pixels of them is dropped: the
# border's blur reaches 3 sigma (6 pixels) into the image, and fill within the window radius of the border is not
# flat enough to be found.
_FILL_DARKEST, _FILL_LIGHTEST, _FILL_FLATNESS, _FILL_WINDOW_RADIUS = 8, 247, 2, 2
_FILL_MARGIN = 3 * round(_HIGH_PASS_SIGMA) + _FILL_WINDOW_RADIUS
_FILL_WINDOW = np.ones((2 * _FILL_WINDOW_RADIUS + 1,) * 2, np.uint8)
_FILL_MARGIN_WINDOW = np.ones((2 * _FILL_MARGIN + 1,) * 2, np.uint8)
# A thin strip of shared ground (two tiles cut side by side with a 10 % overlap) correlates strongly where it is,
# but phase correlation of the whole thumbnails buries its peak among the rest's (for 10 % strips of RSSCN7
# tiles, the right placement's peak ranked up to a few hundredth). Pairs that phase correlation does not confirm
# are therefore searched directly (`_search_placements`): the normalised cross-correlation of every shift is
# computed on the thumbnails shrunk by _SEARCH_SCALE, and the best shift is checked at full thumbnail size if it
# reaches _SEARCH_FLOOR there. For 70 such 10 % strips, the right shift reached 0.38 or more at half size (0.53
# or more for 95 % of them); for 1,000 random pairs of different tiles of one class, the best shift reached
# 0.53 or more for 1 %.
_SEARCH_SCALE, _SEARCH_FLOOR = 0.5, 0.4
# A placement found by that search must be distinct: correlate better by _DISTINCT_MARGIN than every placement
# _DISTINCT_OFFSET thumbnail pixels away, in 24 directions. Along a straight edge or parallel stripes (a shoreline,
# rows of barns, furrows, the border of a field) the correlation stays as high when shifted along them, so two
# different scenes with such lines can correlate well at many placements; shared ground correlates at one. On
# RSSCN7, three such pairs of different tiles (0.72 to 0.84; one at 64 px) lost at most 0.04 of it 4 pixels away
# in one of these directions (eight directions missed the steep border of a field); the benchmark's three shared
# strips lost 0.23 to 0.37, and 13 strips of 10 % cut from RSSCN7 tiles lost more.
_DISTINCT_OFFSET, _DISTINCT_MARGIN = 4, 0.1
_DISTINCT_STEPS = sorted({
    (round(_DISTINCT_OFFSET * math.sin(angle)), round(_DISTINCT_OFFSET * math.cos(angle)))
    for angle in np.linspace(0.0, 2 * math.pi, 24, endpoint=False)
})
# Keypoints are found on images enlarged to at least this longest side: on a 64-pixel tile ORB's pyramid and
# 19-pixel patches leave a half-area crop of it with almost no corners (none of 60 such crops matched; 56 of 60
# after enlarging).
_MIN_KEYPOINT_SIDE = 128
# Images narrower than this (working pixels) carry too little detail for a correlation, or for keypoints on an
# enlarged copy, to mean anything.
_MIN_DETAIL_SIDE = 32
# Pairs handed to a thread at a time: enough to make handing them over cheap.
_PAIRS_PER_BATCH = 64
# A match is confirmed on what its evidence did not use (`_detail_agreement`): the thumbnails' fine detail is
# correlated, as aligned, over the shared region outside the keypoint inliers' hull, widened by _HULL_MARGIN
# thumbnail pixels (about ORB's patch radius), in each cell of a square grid holding _MIN_CELL_PIXELS or more of
# it, and the median cell decides. A caption, logo or info band at the same place in different images gives a fit
# of the same kind as a copy's, with every inlier on the overlay, and can dominate the correlation of smooth
# scenes; away from it such pairs do not correlate. A keypoint fit's grid has _KEYPOINT_GRID cells a side: the
# hull already leaves the overlay out. A correlation's placement has no inliers to leave out, and a line of text
# across the middle touches half the cells of a 4 x 4 grid (a translucent watermark on smooth fields: 0.38 at
# most, against 0.48 for the weakest true match) but a third of _PLACEMENT_GRID's (0.06, against 0.33).
_HULL_MARGIN, _MIN_CELL_PIXELS, _KEYPOINT_GRID, _PLACEMENT_GRID = 6, 16, 4, 6
_HULL_WINDOW, _SEAM_WINDOW = np.ones((2 * _HULL_MARGIN + 1,) * 2, np.uint8), np.ones((7, 7), np.uint8)
# Inliers whose widened hull leaves less than this share of the shared region are evidence enough themselves.
_COVERED_SHARE = 0.1
# A copy stretched, sheared or seen at an angle misaligns under a similarity fit, so an affine fit and a
# homography of the same matches are tried too; only plausible ones: an affine fit stretching one direction at
# most _MAX_STRETCH times the other, a homography whose projective scale varies at most _MAX_PERSPECTIVE times
# over the image, and each only when its inliers spread _MIN_SPREAD thumbnail pixels (a robust standard deviation)
# across their main direction: matches along a line of text leave both fits free to turn the rest of the image
# anywhere. (The similarity fit's own inliers may lie in a band: for a copy stretched 0.7x, where the stretch
# stays within RANSAC's tolerance.)
_MAX_STRETCH, _MAX_PERSPECTIVE, _MIN_SPREAD = 2.0, 1.5, 2.0
# Correlation phases are kept in this many steps of a turn (one byte each): see `_phases`.
_PHASE_LEVELS = 256
_COSINES = np.cos(2 * np.pi * np.arange(_PHASE_LEVELS) / _PHASE_LEVELS).astype(np.float32)
_SINES = np.sin(2 * np.pi * np.arange(_PHASE_LEVELS) / _PHASE_LEVELS).astype(np.float32)
# What Pillow raises on files it cannot decode (missing, truncated, not an image, too large).
_UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ImageFeatures:
    """ORB features of one image and of its horizontal mirror, in working-image pixel coordinates, plus what the
    correlation stage needs of it.

    `points`/`descriptors` come from the image itself, strongest corner first; `mirror_points`/`mirror_descriptors`
    describe the strongest `mirror_features` of them on the image flipped left-right (coordinates in the flipped
    frame). `scale` converts original to working pixels. `thumbnail` is the grey image with its longest side at
    `_THUMBNAIL_SIDE` (uint8, 16 KB at most: a chunk holds the features of every image it touches), or 0 x 0
    when the image is too small to correlate; its fine detail is taken when a pair needs it. `phases` holds the
    spectrum phases (`_phases`) of the fine detail of each of its views (`_views`: the thumbnail, then the
    thumbnail shrunk by each of `correlation_zooms`), 8 KB each; none when it is too small to correlate.
    """

    path: str
    width: int
    height: int
    scale: float
    points: np.ndarray
    descriptors: np.ndarray
    mirror_points: np.ndarray
    mirror_descriptors: np.ndarray
    thumbnail: np.ndarray
    phases: np.ndarray
    correlation_zooms: tuple[float, ...]

    @property
    def enlarged(self) -> bool:
        """Whether the working image is larger than the original (`_MIN_KEYPOINT_SIDE`)."""
        return self.scale > 1.0


@dataclass(frozen=True)
class Verification:
    """Outcome of verifying one pair.

    `evidence`: the check that accepted the pair (a `tasks.schema.Check`), or "" when none did. `score`: for a
    keypoint match, the share of one-to-one ratio-test matches that are geometric inliers (0 when too few matches
    to fit); for a correlation match (`inliers` 0), the normalised cross-correlation that accepted it.
    `inliers`: number of keypoint inliers. `transform`: how b relates to a, '+'-joined from same, hflip, vflip,
    rotate90/rotate180/rotate270 (clockwise), rotate (other angle), rescale, crop (one image lies within the
    other), shift (neither does), and zoom<factor>x (a correlation match at that scale, e.g. zoom2x: b shows a's
    ground twice as large; zoom0.5x: the other way); empty for a rejected pair. `share_a`, `share_b`: the share
    of each image's area that shows ground the other shows too, under the accepted map (for a rejected keypoint
    fit, under its fit). `a_to_b`: that map, 3 x 3 from a's unit square to b's (`tasks.geometry`); None when
    rejected.
    """

    evidence: str
    score: float
    inliers: int
    transform: str
    share_a: float
    share_b: float
    a_to_b: np.ndarray | None = None

    @property
    def accepted(self) -> bool:
        return bool(self.evidence)


NO_MATCH = Verification(evidence="", score=0.0, inliers=0, transform="", share_a=0.0, share_b=0.0)


def _resized(gray: np.ndarray, factor: float) -> np.ndarray:
    size = (max(1, round(gray.shape[1] * factor)), max(1, round(gray.shape[0] * factor)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def _detail(gray: np.ndarray) -> np.ndarray:
    """The fine detail of `gray`: the image minus its Gaussian blur (float32), zero on and near fill.

    Fill is a flat area at either end of the grey scale: the black corners of a turned copy, padding, a
    satellite scene's no-data area. Its straight border would be the strongest detail of the image, and two
    different scenes with the same fill (two copies turned by the same angle) would correlate on it alone."""
    image = gray.astype(np.float32)
    detail = image - cv2.GaussianBlur(image, (0, 0), _HIGH_PASS_SIGMA)
    darkest, lightest = cv2.minMaxLoc(gray)[:2]
    if darkest > _FILL_DARKEST and lightest < _FILL_LIGHTEST:
        return detail  # no fill can be there: most views (about three in four on RSSCN7), at a fraction of the cost
    fill = _flat(gray) & ((gray <= _FILL_DARKEST) | (gray >= _FILL_LIGHTEST))
    if fill.any():
        detail[_near(fill)] = 0.0
    return detail


def _flat(gray: np.ndarray) -> np.ndarray:
    """Pixels whose grey levels vary by at most `_FILL_FLATNESS` within `_FILL_WINDOW_RADIUS` pixels."""
    return cv2.dilate(gray, _FILL_WINDOW) - cv2.erode(gray, _FILL_WINDOW) <= _FILL_FLATNESS


def _near(pixels: np.ndarray) -> np.ndarray:
    """`pixels` (boolean) and every pixel within `_FILL_MARGIN` of them: as far as their border's detail reaches."""
    return cv2.dilate(pixels.view(np.uint8), _FILL_MARGIN_WINDOW).view(bool)


def _detail_of_each() -> Callable[[np.ndarray], np.ndarray]:
    """`_detail`, taken once per image for as long as the returned function is kept: the views and thumbnails of one
    pair, which its checks read several times. (Keyed by identity: only for arrays that outlive it.)"""
    details: dict[int, np.ndarray] = {}

    def detail(gray: np.ndarray) -> np.ndarray:
        if id(gray) not in details:
            details[id(gray)] = _detail(gray)
        return details[id(gray)]

    return detail


def _thumbnail(gray: np.ndarray) -> np.ndarray:
    """`gray` with its longest side at `_THUMBNAIL_SIDE`; 0 x 0 if it is too small to correlate."""
    if min(gray.shape) < _MIN_DETAIL_SIDE:
        return np.empty((0, 0), np.uint8)
    return _resized(gray, _THUMBNAIL_SIDE / max(gray.shape))


def _load_working_gray(path: str, max_side: int) -> tuple[np.ndarray, float] | None:
    """Decode `path` as 8-bit grey at most `max_side` on its longest side; return it and original->working scale."""
    try:
        with Image.open(path) as image:
            original_width = image.width
            # draft() lets the JPEG decoder skip detail via DCT scaling: a large photo decodes several times faster.
            image.draft("L", (max_side, max_side))
            gray = np.asarray(eight_bit(image).convert("L"))
    except _UNREADABLE_ERRORS:
        return None
    if gray.ndim != 2 or min(gray.shape) < 1:
        return None
    longest = max(gray.shape)
    if longest > max_side:
        factor = max_side / longest
        size = (max(1, round(gray.shape[1] * factor)), max(1, round(gray.shape[0] * factor)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray, gray.shape[1] / original_width


def _stretch_contrast(gray: np.ndarray, clip_share: float) -> np.ndarray:
    """Map grey levels between the `clip_share` and 1 - `clip_share` quantiles linearly onto 0..255."""
    cumulative = np.cumsum(cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()) / gray.size
    low = int(np.searchsorted(cumulative, clip_share))
    high = int(np.searchsorted(cumulative, 1.0 - clip_share))
    if high <= low:
        return gray
    levels = (np.arange(256, dtype=np.float32) - low) * (255.0 / (high - low))
    return cv2.LUT(gray, np.clip(levels, 0, 255).astype(np.uint8))


def _orb(settings: VerificationConfig, fast_threshold: int) -> cv2.ORB:
    # Created per call (it costs about a microsecond) because sharing one detector across threads is not safe.
    return cv2.ORB_create(
        settings.n_features,
        edgeThreshold=settings.patch_size,
        patchSize=settings.patch_size,
        fastThreshold=fast_threshold,
    )


def _as_arrays(keypoints: Sequence[cv2.KeyPoint], descriptors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint positions (N x 2 float32) and descriptors (N x 32 uint8), empty arrays when there are none."""
    if descriptors is None or not keypoints:
        return np.empty((0, 2), np.float32), np.empty((0, 32), np.uint8)
    return cv2.KeyPoint_convert(keypoints).reshape(-1, 2), descriptors


def _detect(
    gray: np.ndarray, settings: VerificationConfig
) -> tuple[Sequence[cv2.KeyPoint], np.ndarray | None, np.ndarray]:
    """ORB keypoints and descriptors of `gray`, and the order of the keypoints from the strongest corner down (a
    prefix in that order is the most repeatable subset); none when the image is too small to hold a corner inside
    ORB's border."""
    if min(gray.shape) <= 2 * settings.patch_size:  # OpenCV's pyramid also fails outright on 1-pixel images
        return (), None, np.empty(0, np.int64)
    keypoints, descriptors = _orb(settings, settings.fast_threshold).detectAndCompute(gray, None)
    if len(keypoints) < settings.n_features // 2 and settings.low_texture_fast_threshold < settings.fast_threshold:
        keypoints, descriptors = _orb(settings, settings.low_texture_fast_threshold).detectAndCompute(gray, None)
    # Sorted in numpy rather than as Python objects: this runs with the GIL held while the other threads wait.
    return keypoints, descriptors, np.argsort([-keypoint.response for keypoint in keypoints], kind="stable")


def extract_features(path: str | Path, settings: VerificationConfig = VerificationConfig()) -> ImageFeatures | None:
    """Compute ORB features of the image at `path` and of its mirror image; None if it cannot be decoded."""
    loaded = _load_working_gray(str(path), settings.max_side)
    if loaded is None:
        return None
    gray, scale = loaded
    thumbnail = _thumbnail(gray)
    if max(gray.shape) < _MIN_KEYPOINT_SIDE and min(gray.shape) >= _MIN_DETAIL_SIDE:
        enlarged = _resized(gray, _MIN_KEYPOINT_SIDE / max(gray.shape))
        gray, scale = enlarged, scale * enlarged.shape[1] / gray.shape[1]
    # A global stretch (not CLAHE, whose tiles change under cropping) cancels brightness and contrast edits and
    # lifts smooth scenes such as water and grass towards the FAST threshold.
    gray = _stretch_contrast(gray, settings.contrast_clip)
    keypoints, descriptors, strongest_first = _detect(gray, settings)
    # Detection is mirror-symmetric, so reflecting the keypoints (position and orientation) and describing them
    # on the flipped image gives nearly what detecting on the flipped image would, without detecting twice. Only
    # the strongest are mirrored: a mirrored copy shares most of its corners, so a few suffice, and the mirror
    # retry then costs a fraction of the direct match.
    width = gray.shape[1]
    points, descriptors = _as_arrays(keypoints, descriptors)
    points, descriptors = points[strongest_first], descriptors[strongest_first]
    # The strongest keypoints are turned into their mirror images in place (no longer needed as they were):
    # constructing new ones would release and retake the GIL once per keypoint, which stalls the other threads.
    mirrored_keypoints = [keypoints[i] for i in strongest_first[: settings.mirror_features]]
    for keypoint in mirrored_keypoints:
        keypoint.pt = (width - 1 - keypoint.pt[0], keypoint.pt[1])
        keypoint.angle = (180.0 - keypoint.angle) % 360.0
    mirrored_keypoints, mirror_descriptors = _orb(settings, settings.fast_threshold).compute(
        cv2.flip(gray, 1), mirrored_keypoints
    ) if mirrored_keypoints else ((), None)
    mirror_points, mirror_descriptors = _as_arrays(mirrored_keypoints, mirror_descriptors)
    zooms = settings.correlation_zooms
    views = _views(thumbnail, zooms) if thumbnail.size else []
    return ImageFeatures(
        path=str(path),
        width=width,
        height=gray.shape[0],
        scale=scale,
        points=points,
        descriptors=descriptors,
        mirror_points=mirror_points,
        mirror_descriptors=mirror_descriptors,
        thumbnail=thumbnail,
        phases=np.array([_phases(_detail(view)) for view in views], np.uint8).reshape(
            len(views), _THUMBNAIL_SIDE, _THUMBNAIL_SIDE // 2 + 1),
        correlation_zooms=zooms,
    )


@dataclass(frozen=True)
class _Fit:
    """A RANSAC similarity fit from a's (possibly mirrored) working frame to b's, and the matches behind it."""

    matrix: np.ndarray
    inliers: int
    matches: int
    mirrored: bool
    # The ratio-test matches, in a's and b's own (never mirrored) working frames, and which of them are inliers.
    matched_a: np.ndarray
    matched_b: np.ndarray
    inlier_mask: np.ndarray


@numba.njit(nogil=True, cache=True)
def _one_to_one_matches(distances: np.ndarray, neighbours: np.ndarray, ratio: float, targets: int) -> np.ndarray:
    """The source keypoints (rows of `two_nearest`'s `distances` and `neighbours`) whose nearest target is
    clearly nearer than the next (the ratio test), keeping only the closest of several matched to one target
    (the lowest row of equals), in the order of their targets.

    Many-to-one matches let RANSAC collapse the source's content onto a point of the target and pile up inliers
    between different scenes of one texture. Compiled: as numpy's sort and unique, it held the GIL for about a
    tenth of a pair's matching."""
    closest = np.full(targets, -1, np.int64)
    for row in range(len(distances)):
        if distances[row, 0] < ratio * distances[row, 1]:
            target = neighbours[row, 0]
            if closest[target] < 0 or distances[row, 0] < distances[closest[target], 0]:
                closest[target] = row
    return closest[closest >= 0]


def _fit(source: ImageFeatures, target: ImageFeatures, mirrored: bool, settings: VerificationConfig) -> _Fit | None:
    """Ratio-test matches from source's keypoints (or its mirrored ones) to target's, and the RANSAC similarity
    transform they support, if enough of them."""
    points, descriptors = (source.mirror_points, source.mirror_descriptors) if mirrored else (
        source.points, source.descriptors)
    if len(descriptors) < settings.min_inliers or len(target.descriptors) < 2:
        return None
    distances, neighbours = two_nearest(descriptors, target.descriptors)
    passing = _one_to_one_matches(distances, neighbours, settings.ratio_test, len(target.descriptors))
    if len(passing) < settings.min_inliers:
        return None
    matched_source, matched_target = points[passing], target.points[neighbours[passing, 0]]
    matrix, inlier_mask = cv2.estimateAffinePartial2D(
        matched_source,
        matched_target,
        method=cv2.RANSAC,
        ransacReprojThreshold=settings.ransac_threshold,
        maxIters=_RANSAC_MAX_ITERATIONS,
        confidence=_RANSAC_CONFIDENCE,
    )
    if matrix is None:
        return None
    if mirrored:
        matched_source = _unmirrored(matched_source, source.width)
    inliers = inlier_mask.ravel().astype(bool)
    return _Fit(matrix=matrix, inliers=int(inliers.sum()), matches=len(passing), mirrored=mirrored,
                matched_a=matched_source, matched_b=matched_target, inlier_mask=inliers)


def _unmirrored(points: np.ndarray, width: int) -> np.ndarray:
    """Points of an image flipped left-right, in the image's own frame (mirrored keypoints lie at width - 1 - x)."""
    return np.column_stack([width - 1 - points[:, 0], points[:, 1]]).astype(np.float32)


def _area_scale(matrix: np.ndarray) -> float:
    """How much the affine `matrix` (2 x 3, or its 2 x 2 linear part) scales areas: the determinant, written out
    (a call into LAPACK costs more than the arithmetic)."""
    return abs(float(matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0]))


def _working_map(fit: _Fit, a: ImageFeatures) -> np.ndarray:
    """The fit as a 3 x 3 map from a's working frame to b's: a mirrored fit maps from a's mirror image, so a is
    flipped first (as mirrored keypoints are placed, x -> width - 1 - x)."""
    flip = np.array([[-1.0, 0.0, a.width - 1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if fit.mirrored else np.eye(3)
    return np.vstack([fit.matrix, [0.0, 0.0, 1.0]]) @ flip


def _unit_map(fit: _Fit, a: ImageFeatures, b: ImageFeatures) -> np.ndarray:
    """The fit as a map from a's unit square to b's."""
    return to_unit_map(_working_map(fit, a), (a.width, a.height), (b.width, b.height))


def _alignments(
    fit: _Fit, a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Maps (3 x 3) from a's thumbnail to b's under which to confirm `fit`, each with its inliers' places in b's
    working frame: the fit itself, then a plausible affine fit and homography of its matches. Lazy: a later map is
    fitted only if the earlier ones did not confirm."""
    a_scale, b_scale = a.thumbnail.shape[1] / a.width, b.thumbnail.shape[1] / b.width
    to_thumbnail_b = np.diag([b_scale, b_scale, 1.0])
    from_thumbnail_a = np.diag([1 / a_scale, 1 / a_scale, 1.0])
    similarity = to_thumbnail_b @ _working_map(fit, a) @ from_thumbnail_a
    yield similarity, fit.matched_b[fit.inlier_mask]
    thumbnail_a, thumbnail_b = fit.matched_a * a_scale, fit.matched_b * b_scale
    tolerance = settings.ransac_threshold * b_scale

    height, width = a.thumbnail.shape
    corners = np.array([[0.0, 0.0, 1.0], [width, 0.0, 1.0], [0.0, height, 1.0], [width, height, 1.0]])

    def plausible(a_to_b: np.ndarray, mask: np.ndarray) -> bool:
        inliers = thumbnail_b[mask.ravel().astype(bool)]
        if len(inliers) < 3 or _narrowest_spread(inliers) < _MIN_SPREAD:
            return False
        projective = corners @ a_to_b[2]
        if projective.min() <= 0 or projective.max() > _MAX_PERSPECTIVE * projective.min():
            return False
        # A homography's linear part, scaled as at the thumbnail's centre.
        return _stretch(a_to_b[:2, :2] / (a_to_b[2] @ [width / 2, height / 2, 1.0])) <= _MAX_STRETCH

    affine, mask = cv2.estimateAffine2D(thumbnail_a, thumbnail_b, method=cv2.RANSAC, ransacReprojThreshold=tolerance)
    if affine is not None:
        affine = np.vstack([affine, [0.0, 0.0, 1.0]])
        if plausible(affine, mask):
            yield affine, fit.matched_b[mask.ravel().astype(bool)]
    if len(thumbnail_a) >= 4:
        homography, mask = cv2.findHomography(thumbnail_a, thumbnail_b, cv2.RANSAC, tolerance)
        if homography is not None and plausible(homography, mask):
            yield homography, fit.matched_b[mask.ravel().astype(bool)]


def _narrowest_spread(points: np.ndarray) -> float:
    """How widely `points` (N x 2) spread across their main direction, robustly: the median absolute deviation of
    their offsets from the main line, scaled to a standard deviation. A line of matches along a caption plus one
    stray match far off it spreads by nothing, where a standard deviation would call it spread."""
    centred = points - points.mean(axis=0)
    xx, yy = (centred**2).mean(axis=0)
    xy = float((centred[:, 0] * centred[:, 1]).mean())
    angle = 0.5 * math.atan2(2 * xy, xx - yy)  # the covariance's main axis, written out as for `_stretch`
    offsets = centred @ np.array([-math.sin(angle), math.cos(angle)])
    return 1.4826 * float(np.median(np.abs(offsets - np.median(offsets))))


def _stretch(linear: np.ndarray) -> float:
    """How many times more the 2 x 2 map `linear` stretches one direction than another: the ratio of its singular
    values, from their squares' sum (the squared norm) and product (the squared determinant), written out (numpy's
    linear algebra calls into OpenBLAS, slow beside busy threads)."""
    total, determinant = float((linear**2).sum()), _area_scale(linear)
    spread = math.sqrt(max(total**2 - 4 * determinant**2, 0.0))
    return math.sqrt((total + spread) / max(total - spread, 1e-12))


def _cell_sums(values: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Sums of `values` (H x W x C) over the grid cells cut at `rows` and `columns` (boundaries, first to last, each
    cell at least one pixel): an array of (cells down) x (cells across) x C."""
    window = values[rows[0] : rows[-1], columns[0] : columns[-1]].astype(np.float64)
    return np.add.reduceat(np.add.reduceat(window, rows[:-1] - rows[0], axis=0), columns[:-1] - columns[0], axis=1)


def _detail_agreement(
    a_to_b: np.ndarray, inlier_points_b: np.ndarray, a: ImageFeatures, b: ImageFeatures, grid: int,
    detail: Callable[[np.ndarray], np.ndarray] = _detail,
) -> float:
    """How well the thumbnails' fine detail agrees, aligned by `a_to_b` (thumbnail to thumbnail), over the shared
    region outside the hull of the inliers (b's working frame) and away from any area where both show one flat
    level: the median, over the cells of a `grid` x `grid` grid holding enough of that region, of the cells'
    normalised cross-correlations. 1 when the hull covers all but `_COVERED_SHARE` of the shared region; -1 when
    the map leaves almost nothing shared, or when fewer than half of those cells have detail in both images. The
    image showing the shared ground larger is warped onto the other, blurred first if shrunk much. `detail` takes
    the unwarped thumbnail's (`_detail_of_each` shares it between the checks of one pair)."""
    hull_points = (inlier_points_b * (b.thumbnail.shape[1] / b.width)).reshape(-1, 1, 2).astype(np.float32)
    area_scale = _area_scale(a_to_b) / a_to_b[2, 2] ** 2
    if area_scale < 1.0:
        fixed, moving, to_fixed = b.thumbnail, a.thumbnail, a_to_b
    else:
        fixed, moving, to_fixed = a.thumbnail, b.thumbnail, cv2.invert(a_to_b)[1]
        if len(hull_points):
            hull_points = cv2.perspectiveTransform(hull_points, to_fixed)
    shrink = math.sqrt(max(area_scale, 1.0 / area_scale))
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
    if len(ys) < _MIN_CELL_PIXELS * grid**2 or min(np.ptp(ys), np.ptp(xs)) < grid:
        return -1.0
    if np.count_nonzero(region) < _COVERED_SHARE * len(ys):
        return 1.0
    # An overlay placed over both (a sticker, a logo, a redaction box) shows one flat level in both, and its rim is
    # the strongest detail around: judge the region away from it, unless that leaves too little (a scene mostly
    # flat, such as still water, is flat and the same in both images of a copy too).
    same = cv2.dilate(cv2.absdiff(fixed, warped), _FILL_WINDOW) <= _FILL_FLATNESS
    away = region & ~_near(_flat(fixed) & same)
    if np.count_nonzero(away) >= _COVERED_SHARE * len(ys):
        region = away
    first, second = detail(fixed) * region, _detail(warped) * region
    values = np.stack([region, first, second, first * first, second * second, first * second], axis=-1)
    rows = np.linspace(ys.min(), ys.max() + 1, grid + 1).astype(int)
    columns = np.linspace(xs.min(), xs.max() + 1, grid + 1).astype(int)
    count, sum_1, sum_2, sum_11, sum_22, sum_12 = np.moveaxis(_cell_sums(values, rows, columns), -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        covariance = sum_12 - sum_1 * sum_2 / count
        energy = (sum_11 - sum_1**2 / count) * (sum_22 - sum_2**2 / count)
        correlations = covariance / np.sqrt(energy)
    held = count >= _MIN_CELL_PIXELS
    usable = held & (energy > 0)
    # Cells without detail in one image or the other (fill, a black image) say nothing: half must have some.
    return float(np.median(correlations[usable])) if 2 * np.count_nonzero(usable) >= np.count_nonzero(held) else -1.0


def _confirming_map(fit: _Fit, a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig
                    ) -> np.ndarray | None:
    """The map (3 x 3, a's unit square to b's) under which the detail outside the fit's inliers agrees: the fit
    itself or a plausible refit of its matches (`_detail_agreement`), the first that does; None if none does.
    Images too small to correlate cannot be checked and stand on their keypoints: the fit's own map."""
    if not a.thumbnail.size or not b.thumbnail.size:
        return _unit_map(fit, a, b)
    detail = _detail_of_each()
    for a_to_b, inliers in _alignments(fit, a, b, settings):
        if _detail_agreement(a_to_b, inliers, a, b, _KEYPOINT_GRID, detail) >= settings.min_detail_agreement:
            return to_unit_map(a_to_b, a.thumbnail.shape[::-1], b.thumbnail.shape[::-1])
    return None


def _judge(fit: _Fit | None, a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig) -> Verification:
    """Turn a fit into a verdict: accepted only with enough inliers, a plausible scale and a shared region."""
    if fit is None:
        return NO_MATCH
    score = fit.inliers / fit.matches
    working_scale_change = math.sqrt(_area_scale(fit.matrix))  # a's content shrunk or grown, in working pixels
    rejected = Verification(evidence="", score=score, inliers=fit.inliers, transform="", share_a=0.0, share_b=0.0)
    # A fit that shrinks or grows a's content beyond any plausible resize has collapsed onto a few points of b.
    if not 1.0 / settings.max_scale_change <= working_scale_change <= settings.max_scale_change:
        return rejected
    share_a, share_b = shares(_unit_map(fit, a, b))
    rejected = dataclasses.replace(rejected, share_a=share_a, share_b=share_b)
    too_weak = fit.inliers < settings.min_inliers or score < settings.min_inlier_ratio
    if too_weak or max(share_a, share_b) < settings.overlap_min_coverage:
        return rejected
    a_to_b = _confirming_map(fit, a, b, settings)
    if a_to_b is None:
        return rejected
    share_a, share_b = shares(a_to_b)  # under the map that lines the detail up: a stretched copy's refit
    # The fit's linear part in the images' own pixels, undoing each one's shrink to working size (and a mirrored
    # fit's flip, which comes first).
    linear = fit.matrix[:, :2] @ np.diag([-1.0 if fit.mirrored else 1.0, 1.0]) * (a.scale / b.scale)
    return Verification(evidence=Check.KEYPOINTS, score=score, inliers=fit.inliers,
                        transform=describe(linear, share_a, share_b),
                        share_a=share_a, share_b=share_b, a_to_b=a_to_b)


def _phases(detail: np.ndarray) -> np.ndarray:
    """The phase of each coefficient of `detail`'s discrete Fourier transform (zero-padded to a `_THUMBNAIL_SIDE`
    square; the half that a real image needs), in `_PHASE_LEVELS`ths of a turn.

    Whitening the cross-power spectrum keeps only the phase, so that its peak marks the shift rather than the
    strongest texture; a whitened coefficient is the unit number at its phase, so the phase is all an image needs
    to keep (8 KB, against 128 KB for the complex spectrum), and it is computed once per image, with its features.
    Rounding to a level (0.7 degree at most) lowers a correlation peak by less than 0.01 %."""
    canvas = np.zeros((_THUMBNAIL_SIDE, _THUMBNAIL_SIDE), np.float32)
    canvas[: detail.shape[0], : detail.shape[1]] = detail
    # OpenCV's transform and phase (in float32, within 0.3 degrees) take a quarter of scipy's and numpy's angle
    # time; a level moves by one for about 0.2 % of the coefficients, on rounding.
    spectrum = cv2.dft(canvas, flags=cv2.DFT_COMPLEX_OUTPUT)[:, : _THUMBNAIL_SIDE // 2 + 1]
    angles = cv2.phase(np.ascontiguousarray(spectrum[..., 0]), np.ascontiguousarray(spectrum[..., 1]))
    return (np.rint(angles * (_PHASE_LEVELS / (2 * np.pi))).astype(np.int32) % _PHASE_LEVELS).astype(np.uint8)


@numba.njit(nogil=True, cache=True)
def _packed_cross_power(
    fixed_phases: np.ndarray, moving_phases: np.ndarray, cosines: np.ndarray, sines: np.ndarray
) -> np.ndarray:
    """The whitened cross-power spectrum of two views from their phases (`_phases`, the half spectrum of a square
    canvas of even side), packed as OpenCV's inverse real transform reads it (CCS: its first and last columns
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


def _views(thumbnail: np.ndarray, zooms: tuple[float, ...]) -> list[np.ndarray]:
    """The views a correlation compares: the thumbnail, then the thumbnail shrunk by each of `zooms`.

    A zoomed-in view is shrunk to the other image's scale before its detail is taken, so that both keep the same
    band of ground detail."""
    return [thumbnail, *(_resized(thumbnail, 1.0 / zoom) for zoom in zooms)]


@numba.njit(nogil=True, cache=True)
def _normalised_correlation(first: np.ndarray, second: np.ndarray) -> float:
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


def _overlap_area(fixed: np.ndarray, moving: np.ndarray, dy: int, dx: int) -> int:
    """Pixels in the region `fixed` and `moving` share when `moving`'s top-left corner lies at (dy, dx) in
    `fixed`'s frame (0 when they do not overlap)."""
    rows = min(fixed.shape[0], dy + moving.shape[0]) - max(0, dy)
    return max(0, rows) * max(0, min(fixed.shape[1], dx + moving.shape[1]) - max(0, dx))


def _overlap(fixed: np.ndarray, moving: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The regions of `fixed` and `moving` that overlap when `moving`'s top-left corner lies at (dy, dx) in
    `fixed`'s frame; only for placements that overlap (`_overlap_area`): bounds below zero would slice from the
    end."""
    top, left = max(0, dy), max(0, dx)
    bottom, right = min(fixed.shape[0], dy + moving.shape[0]), min(fixed.shape[1], dx + moving.shape[1])
    return fixed[top:bottom, left:right], moving[top - dy : bottom - dy, left - dx : right - dx]


def _overlap_correlation(fixed: np.ndarray, moving: np.ndarray, dy: int, dx: int, min_half: float) -> float:
    """Normalised cross-correlation of the region both images show when `moving`'s top-left corner lies at
    (dy, dx) in `fixed`'s frame; -1 when either half of that region (cut across its longer side) correlates
    below `min_half`. Shared ground correlates throughout, whereas one strong shared-looking feature (a
    shoreline, a road edge) can make a small overlap of different scenes correlate strongly on its own."""
    region_fixed, region_moving = _overlap(fixed, moving, dy, dx)
    whole = _normalised_correlation(region_fixed, region_moving)
    if whole < min_half:
        return whole
    axis = 0 if region_fixed.shape[0] >= region_fixed.shape[1] else 1
    middle = region_fixed.shape[axis] // 2
    for half in (slice(0, middle), slice(middle, None)):
        index = (half, slice(None)) if axis == 0 else (slice(None), half)
        if _normalised_correlation(region_fixed[index], region_moving[index]) < min_half:
            return -1.0
    return whole


def _align(
    fixed: np.ndarray, fixed_phases: np.ndarray, moving: np.ndarray, moving_phases: np.ndarray,
    detail: Callable[[np.ndarray], np.ndarray], min_area: float, min_half: float,
) -> tuple[float, int, float, tuple[int, int]]:
    """Where phase correlation places the view `moving` over the view `fixed` (grey, with the phases of their
    details' spectra from `_phases`): the normalised cross-correlation of their details' overlap
    (`_overlap_correlation`, details from `detail`) and its area (pixels), of the placement that correlates best
    (the largest of equals) among those overlapping by at least `min_area` (-1 and 0 if none), the height of the
    correlation surface's peak as a share of its sum, and where `moving`'s top-left corner lies in `fixed`
    (dy, dx)."""
    # The inverse transform divides by its size, so that the surface sums to 1.
    surface = cv2.idft(_packed_cross_power(fixed_phases, moving_phases, _COSINES, _SINES),
                       flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    peak_y, peak_x = divmod(int(surface.argmax()), _THUMBNAIL_SIDE)
    peak = float(surface[peak_y, peak_x])
    best = (-1.0, 0, peak, (0, 0))
    if peak < _MIN_PEAK:
        return best
    # A circular correlation cannot tell a shift from that shift minus the canvas size: try both on each axis.
    for dy, dx in itertools.product((peak_y, peak_y - _THUMBNAIL_SIDE), (peak_x, peak_x - _THUMBNAIL_SIDE)):
        area = _overlap_area(fixed, moving, dy, dx)
        if area >= max(min_area, 4):
            correlation = _overlap_correlation(detail(fixed), detail(moving), dy, dx, min_half)
            # Kept even at -1 (a half failed): the placement itself is what a strong peak asks to check further.
            if (correlation, area) > best[:2]:
                best = (correlation, area, peak, (dy, dx))
    return best


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


def _best_shift(fixed: np.ndarray, moving: np.ndarray, min_area: float) -> tuple[float, int, int]:
    """The placement of `moving`'s top-left corner at (dy, dx) in `fixed`'s frame whose overlap, of `min_area`
    pixels or more, gives two details (float32) the highest normalised cross-correlation, and that correlation
    (`_best_normalised_product`: -1, 0, 0 if none is positive). Details have a mean near zero, so none is
    removed."""
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


def _search_placements(
    fixed: np.ndarray, moving: np.ndarray, detail: Callable[[np.ndarray], np.ndarray], settings: VerificationConfig
) -> tuple[float, int, tuple[int, int]]:
    """The best placement of the view `moving` over the view `fixed` at the same scale, searched over every shift
    (see `_SEARCH_SCALE`): its normalised cross-correlation at full size (`_overlap_correlation`) and area, among
    placements overlapping by at least `correlation_min_overlap` of the thumbnail, and the shift (as `_align`'s);
    -1 and 0 if none, if it correlates below `search_min_correlation`, or if it is not distinct
    (`_DISTINCT_OFFSET`)."""
    min_area = settings.correlation_min_overlap * _THUMBNAIL_SIDE**2
    small_fixed, small_moving = _resized(fixed, _SEARCH_SCALE), _resized(moving, _SEARCH_SCALE)
    estimate, half_dy, half_dx = _best_shift(_detail(small_fixed), _detail(small_moving), min_area * _SEARCH_SCALE**2)
    if estimate < _SEARCH_FLOOR:
        return -1.0, 0, (0, 0)

    # The shift at full size: one of four, give or take the resizing.
    centre_dy, centre_dx = round(half_dy / _SEARCH_SCALE), round(half_dx / _SEARCH_SCALE)
    best = (-1.0, 0, 0, 0)
    for dy, dx in itertools.product(range(centre_dy - 1, centre_dy + 2), range(centre_dx - 1, centre_dx + 2)):
        area = _overlap_area(fixed, moving, dy, dx)
        if area >= max(min_area, 4):
            correlation = _overlap_correlation(detail(fixed), detail(moving), dy, dx, settings.correlation_min_half)
            if correlation > best[0]:
                best = (correlation, area, dy, dx)
    correlation, area, dy, dx = best
    if correlation < settings.search_min_correlation:
        return -1.0, 0, (0, 0)
    nearby = max(
        (_normalised_correlation(*_overlap(detail(fixed), detail(moving), dy + step_y, dx + step_x))
         for step_y, step_x in _DISTINCT_STEPS if _overlap_area(fixed, moving, dy + step_y, dx + step_x) >= 4),
        default=-1.0,
    )
    return (correlation, area, (dy, dx)) if correlation - nearby >= _DISTINCT_MARGIN else (-1.0, 0, (0, 0))


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


def correlate_pair(a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig = VerificationConfig()) -> Verification:
    """Decide an unrotated pair by correlating thumbnails: b shifted over a at the same scale, or zoomed by one of
    `correlation_zooms` either way. The best alignment is accepted when its high-passed overlap correlates at
    `min_correlation` or more over at least `correlation_min_overlap` of the thumbnail's area, and each half of
    the overlap at `correlation_min_half` or more. If phase correlation proposes no such alignment, every shift at
    the same scale is searched (`_search_placements`: a thin strip), and the best accepted at
    `search_min_correlation` if distinct; failing that, the placement of the highest peak, if it reaches
    `refine_min_peak`, when its median cell correlates at `min_correlation` (`_detail_agreement`). An accepted
    placement must also agree at `min_detail_agreement` cell by cell. `score` is the deciding correlation and
    `inliers` 0. Both images' features must have been extracted with the same `correlation_zooms`."""
    return _correlate(a, b, settings)[0]


def _correlate(a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig) -> tuple[Verification, float]:
    """`correlate_pair`; also the highest peak of the correlation surfaces (0 if none)."""
    zooms = settings.correlation_zooms
    for features in (a, b):
        if features.correlation_zooms != zooms:
            raise ValueError(f"{features.path}: features made for correlation zooms {features.correlation_zooms}, "
                             f"not {zooms}")
    if not len(a.phases) or not len(b.phases):
        return NO_MATCH, 0.0
    min_area = settings.correlation_min_overlap * _THUMBNAIL_SIDE**2
    views_a, views_b = _views(a.thumbnail, zooms), _views(b.thumbnail, zooms)
    # A view's fine detail is taken only for a placement worth checking, and once per pair.
    detail = _detail_of_each()

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
        correlation, area, peak, shift = _align(
            fixed, fixed_phases, moving, moving_phases, detail, min_area, settings.correlation_min_half
        )
        highest_peak = max(highest_peak, peak)
        placement = _placement_map(shift, moving, fixed_is_a, a, b)
        if correlation > best_correlation:
            best_correlation, best_zoom, best_map = correlation, zoom, placement
        if area and (strongest is None or peak > strongest[0]):
            strongest = (peak, zoom, placement)
    if best_correlation < settings.min_correlation:
        correlation, _, shift = _search_placements(views_a[0], views_b[0], detail, settings)
        if correlation > best_correlation:
            best_correlation, best_zoom, evidence = correlation, 1.0, Check.SHIFT_SEARCH
            best_map = _placement_map(shift, views_b[0], True, a, b)
    no_inliers = np.empty((0, 2), np.float32)
    if best_correlation < settings.min_correlation:
        # Strong detail that one image alone has (a watermark stamped on a copy of a smooth scene) can pull the
        # whole overlap's correlation down. A placement with a peak worth a second look (`refine_min_peak`) is
        # accepted if its overlap correlates at `min_correlation` in the median cell instead.
        if strongest is None or strongest[0] < settings.refine_min_peak:
            return NO_MATCH, highest_peak
        agreement = _detail_agreement(strongest[2], no_inliers, a, b, _PLACEMENT_GRID, detail)
        if agreement < settings.min_correlation:
            return NO_MATCH, highest_peak
        best_correlation, best_zoom, best_map, evidence = agreement, strongest[1], strongest[2], Check.MEDIAN_CELL
    # Correlated through and through, not on one caption or logo that both carry at the same place.
    elif _detail_agreement(best_map, no_inliers, a, b, _PLACEMENT_GRID, detail) < settings.min_detail_agreement:
        return NO_MATCH, highest_peak
    a_to_b = to_unit_map(best_map, a.thumbnail.shape[::-1], b.thumbnail.shape[::-1])
    share_a, share_b = shares(a_to_b)
    # A zoom label already says that one image shows part of the other: only a shift is added.
    parts = ([] if best_zoom == 1.0 else [_zoom_label(best_zoom)]) + (["shift"] if max(share_a, share_b) <
                                                                      WITHIN_SHARE else [])
    verdict = Verification(evidence=evidence, score=best_correlation, inliers=0,
                           transform="+".join(parts) if parts else "same", share_a=share_a, share_b=share_b,
                           a_to_b=a_to_b)
    return verdict, highest_peak


def verify_pair(a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig = VerificationConfig()) -> Verification:
    """Decide whether `a` and `b` show the same ground ("duplicate"), part of it ("overlap") or not ("none").

    Keypoints are matched first (directly, then mirrored); only a pair they reject is correlated. Matches are
    searched from a to b, so `transform` and `score` describe b relative to a; swapping the pair can change the
    counts slightly near the thresholds.
    """
    return _verify(a, b, settings)[0]


def _verify(a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig) -> tuple[Verification, bool]:
    """`verify_pair`, and whether a rejected pair is worth the finer keypoint pass (`verify_pairs`): the keypoints
    found `refine_min_inliers` consistent matches, or a correlation surface peaked at `refine_min_peak`; unless
    both images were enlarged for their keypoints (`_MIN_KEYPOINT_SIDE`). There the finer pass would only find
    more corners on the same interpolated pixels: on 1,400 tiles of 64 pixels it linked 3 pairs of different
    tiles. (On images of 128 or 200 pixels, its extra keypoints do find heavy crops that the first pass misses.)"""
    keypoints = _match_keypoints(a, b, settings)
    if keypoints.accepted:
        return keypoints, False
    correlated, peak = _correlate(a, b, settings)
    if correlated.accepted:
        return correlated, False
    worth_refining = keypoints.inliers >= settings.refine_min_inliers or peak >= settings.refine_min_peak
    return keypoints, worth_refining and not (a.enlarged and b.enlarged)


def _reversed(fit: _Fit, a: ImageFeatures, b: ImageFeatures) -> _Fit:
    """A fit from b's (possibly mirrored) frame to a's, turned into the fit from a's frame to b's that `_judge`
    reads: its inverse, and for a mirrored fit (a = M flip_b(b), so b = flip_b M^-1 flip_a
    flip_a(a), where flip_w(x, y) = (w - 1 - x, y) as mirrored keypoints are placed) that inverse between the two
    flips, written out. (numpy's 3 x 3 inverse took 2 ms a call beside other busy threads: OpenBLAS's.)"""
    inverse = cv2.invertAffineTransform(fit.matrix)
    if fit.mirrored:
        (p, q, shift_x), (r, s, shift_y) = inverse
        inverse = np.array([[p, -q, b.width - 1 - p * (a.width - 1) - shift_x],
                            [-r, s, r * (a.width - 1) + shift_y]])
    return _Fit(matrix=inverse, inliers=fit.inliers, matches=fit.matches, mirrored=fit.mirrored,
                matched_a=fit.matched_b, matched_b=fit.matched_a, inlier_mask=fit.inlier_mask)


def _match_keypoints(
    a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig, both_ways: bool = False
) -> Verification:
    """The keypoint verdict: a direct match from a to b, else a mirrored one; with `both_ways`, then the same from
    b to a. When all fail, the one with the most inliers (the first of equals).

    The ratio test keeps a keypoint whose nearest descriptor in the other image is clearly nearer than the next:
    from a heavy crop to its original, nearly every keypoint lies on the ground both show, whereas from the
    original most lie outside the crop and only add doubt. In the finer pass, matching from b too found 21 of 30
    heavy crops (25 to 36 % of the area, turned) that the first pass missed, against 13 from a alone."""
    verdicts: list[Verification] = []
    for source, target, backwards in ((a, b, False), (b, a, True))[: 2 if both_ways else 1]:
        # Descriptor matching is most of a pair's time: each attempt runs only if those before it failed.
        for mirrored in (False, True):
            fit = _fit(source, target, mirrored=mirrored, settings=settings)
            verdicts.append(_judge(_reversed(fit, a, b) if backwards and fit else fit, a, b, settings))
            if verdicts[-1].accepted:
                return verdicts[-1]
    return max(verdicts, key=lambda verdict: verdict.inliers)


def _refined(settings: VerificationConfig) -> VerificationConfig:
    """The settings of the second, finer pass: a larger working image and more keypoints, of which the same share
    is described mirrored (with 100 of 500, a heavily cropped, turned and mirrored copy kept too few of its
    original's mirrored keypoints), otherwise unchanged."""
    mirrored = round(settings.mirror_features * settings.refine_n_features / settings.n_features)
    return settings.model_copy(update={"max_side": settings.refine_max_side, "n_features": settings.refine_n_features,
                                       "mirror_features": min(mirrored, settings.refine_n_features)})


class FeatureCache:
    """The features of recently seen images, shared by the verification chunks that run in one process: chunks
    are cut by pairs, and neighbouring chunks touch many of the same images. Keyed by path, size and
    modification time (an edited file is extracted again) and by the settings; at most `max_bytes` of arrays,
    the least recently used dropped first. Thread-safe."""

    def __init__(self) -> None:
        self.max_bytes = 0
        self._entries: OrderedDict[tuple, tuple[ImageFeatures | None, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def features(self, path: str, settings: VerificationConfig) -> ImageFeatures | None:
        """`extract_features(path, settings)`, from the cache when the same file was extracted recently."""
        try:
            status = os.stat(path)
            key = (path, status.st_size, status.st_mtime_ns, settings.model_dump_json())
        except OSError:
            return None  # what extract_features returns for a file it cannot read
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        extracted = extract_features(path, settings)
        size = 1024 + (sum(array.nbytes for array in (
            extracted.points, extracted.descriptors, extracted.mirror_points, extracted.mirror_descriptors,
            extracted.thumbnail, extracted.phases)) if extracted is not None else 0)
        with self._lock:
            if key not in self._entries and size <= self.max_bytes:
                self._entries[key] = (extracted, size)
                self._bytes += size
                self._trim()
        return extracted

    def limit(self, max_bytes: int) -> None:
        """Keep at most `max_bytes` from now on (dropping the oldest entries beyond it now)."""
        with self._lock:
            self.max_bytes = max_bytes
            self._trim()

    def _trim(self) -> None:
        while self._bytes > self.max_bytes:
            self._bytes -= self._entries.popitem(last=False)[1][1]


# One per process: a Dask worker or the flow's own process keeps what its earlier chunks extracted.
FEATURE_CACHE = FeatureCache()
DEFAULT_FEATURE_CACHE_BYTES = 64 * 2**20


def verify_pairs(
    pairs: pd.DataFrame,
    settings: VerificationConfig = VerificationConfig(),
    workers: int = 2,
    feature_cache_bytes: int = DEFAULT_FEATURE_CACHE_BYTES,
) -> pd.DataFrame:
    """Verify every row of `pairs` (columns path_a, path_b).

    Returns a copy with the columns of `Verification` added (`RESULT_COLUMNS`); a pair with an unreadable image
    is rejected (evidence ""). Each run of pairs takes its images' features from this process's
    `FEATURE_CACHE` (up to `feature_cache_bytes`), which extracts those it does not hold: memory is bounded by
    that budget, not by how many images the pairs touch, and an image whose pairs lie close together in the
    order of `pairs` (as `chunks_by_locality` orders them) is extracted once. `workers` threads
    share the work (OpenCV releases the GIL), with OpenCV's own threading off meanwhile to avoid oversubscription.
    Pairs go to the threads in runs of `_PAIRS_PER_BATCH` consecutive rows.

    A cascade: every pair is matched at the working size, which settles copies cheaply, then correlated if the
    keypoints failed. A pair rejected by both that still showed `refine_min_inliers` consistent keypoint matches,
    or a correlation peak of `refine_min_peak` (shared structure that the thumbnails' correlation could not
    confirm, such as fine furrows), is matched again on finer keypoints (computed only for its images):
    unrelated pairs rarely show either, so the finer pass stays a small share of the time.
    """
    fine_settings = _refined(settings)
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            FEATURE_CACHE.limit(feature_cache_bytes)

            def verify_batch(batch: list[tuple[str, str]]) -> list[tuple[Verification, bool]]:
                paths = dict.fromkeys(path for pair in batch for path in pair)
                features = {path: FEATURE_CACHE.features(path, settings) for path in paths}
                return [
                    (NO_MATCH, False) if features[path_a] is None or features[path_b] is None
                    else _verify(features[path_a], features[path_b], settings)
                    for path_a, path_b in batch
                ]

            rows = list(zip(pairs["path_a"], pairs["path_b"]))
            batches = [rows[start : start + _PAIRS_PER_BATCH] for start in range(0, len(rows), _PAIRS_PER_BATCH)]
            verified = itertools.chain.from_iterable(pool.map(verify_batch, batches))
            results, worth_refining = zip(*progress(verified, "verify", len(pairs), "pair")) if rows else ((), ())
            results = list(results)
            doubtful = [index for index, worth in enumerate(worth_refining) if worth]
            doubtful_pairs = [rows[index] for index in doubtful]

            def refine_row(pair: tuple[str, str]) -> Verification:
                fine_a, fine_b = (FEATURE_CACHE.features(path, fine_settings) for path in pair)
                if fine_a is None or fine_b is None:
                    return NO_MATCH
                refined = _match_keypoints(fine_a, fine_b, fine_settings, both_ways=True)
                return dataclasses.replace(refined, evidence=Check.FINE_KEYPOINTS) if refined.accepted else refined

            for index, refined in zip(doubtful, pool.map(refine_row, doubtful_pairs)):
                if refined.accepted:
                    results[index] = refined
    finally:
        cv2.setNumThreads(previous_threads)
    release_free_memory()  # the batches' decoded images and correlation surfaces, spread over the threads' heaps
    verified = pairs.copy()
    verified[EVIDENCE] = [str(result.evidence) for result in results]
    verified[MATCH_SCORE] = [result.score for result in results]
    verified[INLIERS] = [result.inliers for result in results]
    verified[TRANSFORM] = [result.transform for result in results]
    verified[SHARE_A] = [result.share_a for result in results]
    verified[SHARE_B] = [result.share_b for result in results]
    # The map as 9 numbers, so that it caches and stores as one fixed-size list.
    verified[A_TO_B] = pd.Series([None if result.a_to_b is None else result.a_to_b.ravel().astype(np.float64)
                                  for result in results], index=verified.index, dtype=object)
    return verified


def _unordered(rows: np.ndarray, others: np.ndarray, similarity: np.ndarray, rank: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {PAIR_A: np.minimum(rows, others), PAIR_B: np.maximum(rows, others), SIMILARITY: similarity, RANK: rank}
    )


def _ranked_pairs(rows: np.ndarray, found: np.ndarray, similarities: np.ndarray) -> pd.DataFrame:
    """Unordered pairs from each row's nearest items (positions in `rows`, best first), rank 0 for the nearest."""
    k = found.shape[1]
    return _unordered(np.repeat(rows, k), rows[found.ravel()], similarities.ravel(), np.tile(np.arange(k), len(rows)))


def signature_neighbours(
    signatures: np.ndarray, rows: np.ndarray, k: int, search: Search = plain_search
) -> pd.DataFrame:
    """Each row's k most similar rows by colour signature (unordered pairs, similarity = cosine of signatures,
    rank = 0 for the row's nearest)."""
    return _ranked_pairs(rows, *search("colour", lambda: (signatures, signatures), k, symmetric=True))


def part_neighbours(
    signatures: np.ndarray, parts: Sequence[np.ndarray], rows: np.ndarray, k: int, search: Search = plain_search
) -> pd.DataFrame:
    """Each row's k images with a part whose colours are nearest the row's whole image (unordered pairs;
    similarity = that part's cosine; rank 0 for the nearest). `parts` holds each row's `PART_WINDOWS` part
    signatures as uint8 levels (`tasks.imagestats.colour_signatures`), stacked only if something is searched:
    a re-run whose last search still holds (`reusing_search`) does not copy them (230 MB at 100,000 images).

    A 2x zoom into a tile, or a small crop of it, shows the colours of one part of the tile, so it ranks the
    tile first here even when the whole tile's colours and embedding are far from its own."""

    def inputs() -> tuple[np.ndarray, np.ndarray]:
        return signatures, np.stack(parts).reshape(-1, signatures.shape[1]) if len(parts) else np.asarray(parts)

    return _ranked_pairs(rows, *search("parts", inputs, k, windows=PART_WINDOWS, scale=1.0 / 255.0))


def structure_neighbours(
    structures: np.ndarray, rows: np.ndarray, k: int, search: Search = plain_search
) -> pd.DataFrame:
    """Each row's k nearest rows by structure signature (int8, `tasks.imagestats.structure_signature`), each
    compared in whichever of its flips and quarter turns fits best (unordered pairs; similarity = that cosine;
    rank 0 for the nearest)."""
    return _ranked_pairs(rows, *search(
        "structure", lambda: (structures.astype(np.float32) / 127.0, dihedral_variants(structures)), k,
        symmetric=True, windows=DIHEDRAL_VARIANTS, scale=1.0 / 127.0,
    ))


def _natural_key(path: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a file's name without its folders and suffix: digit runs compare as numbers (tile_9 before
    tile_10); digit runs sort before words."""
    stem = Path(path).stem.lower()
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", stem) if part)


def name_neighbours(paths: pd.Series, rows: np.ndarray, k: int) -> pd.DataFrame:
    """Each row with the rows whose files follow it, up to k, in natural order of file name, and its next file
    along each number of a name that holds several (`grid_neighbours`): unordered pairs, no similarity, rank =
    distance in natural order - 1 (0 for a grid neighbour)."""
    ordered = rows[sorted(range(len(rows)), key=lambda position: (_natural_key(paths.iloc[position]), position))]
    steps = range(1, min(k, len(rows) - 1) + 1)
    none = np.empty(0, np.int64)
    sources = np.concatenate([none, *(ordered[:-step] for step in steps)])
    targets = np.concatenate([none, *(ordered[step:] for step in steps)])
    ranks = np.concatenate([none, *(np.full(len(ordered) - step, step - 1) for step in steps)])
    grid_sources, grid_targets = grid_neighbours(paths, rows)
    return _unordered(np.concatenate([sources, grid_sources]), np.concatenate([targets, grid_targets]),
                      np.full(len(sources) + len(grid_sources), np.nan),
                      np.concatenate([ranks, np.zeros(len(grid_sources), np.int64)]))


def grid_neighbours(paths: pd.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows whose file names (without folders and suffix) are the same but for one of several numbers,
    which is the next value found along it: tiles saved with their row and column (`scene_r3_c7`) or pixel offsets
    (`scene_1024_512`) are next to each other on either axis, and the tile below is rarely the next file in
    natural order. Names with one number or none give nothing here."""
    names = [re.split(r"(\d+)", Path(path).stem.lower()) for path in paths]
    grid = pd.DataFrame({"row": rows, "template": ["#".join(parts[0::2]) for parts in names],
                         "numbers": [tuple(int(number) for number in parts[1::2]) for parts in names]})
    grid = grid[grid["numbers"].map(len) >= 2]
    sources, targets = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for _, files in grid.groupby("template", sort=False):
        numbers = np.array(files["numbers"].tolist(), dtype=np.int64)
        for axis in range(numbers.shape[1]):
            # Along `axis`: files equal on every other number, in order of this one; each with the next.
            others = np.delete(numbers, axis, axis=1)
            order = np.lexsort((numbers[:, axis], *others.T[::-1]))
            same_line = (others[order][1:] == others[order][:-1]).all(axis=1)
            sources.append(files["row"].to_numpy()[order][:-1][same_line])
            targets.append(files["row"].to_numpy()[order][1:][same_line])
    return np.concatenate(sources), np.concatenate(targets)


def _paired_dots(
    vectors: np.ndarray, first: np.ndarray, second: np.ndarray, pairs_per_block: int = 65536
) -> np.ndarray:
    """`vectors[first[i]] . vectors[second[i]]` for each i, a block of pairs at a time: gathering both rows of
    800,000 pairs at once held 840 MB of colour signatures for a moment."""
    dots = np.empty(len(first), vectors.dtype)
    for start in range(0, len(first), pairs_per_block):
        block = slice(start, start + pairs_per_block)
        dots[block] = np.einsum("ij,ij->i", vectors[first[block]], vectors[second[block]])
    return dots


def select_candidates(
    files: pd.DataFrame, pairs: pd.DataFrame, settings: VerificationConfig, cache_dir: Path | None = None
) -> pd.DataFrame:
    """The pairs worth verifying, with their embedding and colour similarities.

    Each image's nearest neighbours by embedding and by colour signature are proposed (a rotated or mirrored
    copy keeps its colours but is sometimes not among the embedding's nearest neighbours); a proposal is kept
    when either similarity is high, or when it is among the `candidates_always` nearest of one of its images by
    either measure. Copies that are cropped, rotated or mirrored, and tiles that share only part of their
    ground, often score well below the seed's duplicate threshold, so neither floor is a duplicate threshold:
    verification decides. Each image's `candidates_by_part` nearest by part signature (`part_neighbours`), its
    `candidates_by_structure` nearest by structure signature (`structure_neighbours`) when similar enough, and
    its `candidates_by_name` successors by file name (`name_neighbours`) are verified too. With `cache_dir`, each
    search reuses the last of its kind there, for the images it covered (`tasks.similarity.top_k_reusing`)."""
    ranked = neighbours_by_row(pairs)
    ranked = ranked[ranked[RANK] < settings.candidates_per_image]
    by_embedding = _unordered(
        ranked["row"].to_numpy(), ranked["other"].to_numpy(), ranked[SIMILARITY].to_numpy(), ranked[RANK].to_numpy()
    )
    readable = files[files[SIGNATURE].notna()]
    signatures = np.stack(readable[SIGNATURE].to_numpy()) if len(readable) else np.empty((0, 0), np.float32)
    rows = readable[Col.ROW].to_numpy(dtype=np.int64)
    position = pd.Series(np.arange(len(rows)), index=rows)
    search = reusing_search(cache_dir, readable[Col.SHA256].astype(str).tolist(), CONTENT_VERSION) if cache_dir \
        else plain_search

    def with_similarities(proposed: pd.DataFrame) -> pd.DataFrame:
        proposed = proposed.merge(pairs[[PAIR_A, PAIR_B, SIMILARITY]], on=[PAIR_A, PAIR_B], how="left")
        proposed[COLOUR_SIMILARITY] = _paired_dots(
            signatures, position.reindex(proposed[PAIR_A]).to_numpy(), position.reindex(proposed[PAIR_B]).to_numpy()
        )
        return proposed

    by_colour = signature_neighbours(signatures, rows, settings.candidates_per_image, search)
    proposals = pd.concat([by_embedding, by_colour]).groupby([PAIR_A, PAIR_B], as_index=False)[RANK].min()
    proposals = with_similarities(proposals)
    worth = (
        (proposals[SIMILARITY].fillna(0.0) >= settings.candidate_similarity)
        | (proposals[COLOUR_SIMILARITY] >= settings.candidate_colour_similarity)
        | (proposals[RANK] < settings.candidates_always)
    )
    chosen = [proposals.loc[worth, [PAIR_A, PAIR_B]]]
    if settings.candidates_by_part and len(readable):
        by_part = part_neighbours(signatures, readable[PART_SIGNATURES].to_numpy(), rows,
                                  settings.candidates_by_part, search)
        chosen.append(by_part[[PAIR_A, PAIR_B]])
    if settings.candidates_by_structure and len(readable):
        structures = np.stack(readable[STRUCTURE].to_numpy())
        near = structure_neighbours(structures, rows, settings.candidates_by_structure, search)
        chosen.append(near.loc[near[SIMILARITY] >= settings.candidate_structure_similarity, [PAIR_A, PAIR_B]])
    if settings.candidates_by_name:
        chosen.append(name_neighbours(readable[Col.PATH], rows, settings.candidates_by_name)[[PAIR_A, PAIR_B]])
    candidates = pd.concat(chosen).drop_duplicates()
    return with_similarities(candidates).sort_values([PAIR_A, PAIR_B]).reset_index(drop=True)


RESULT_COLUMNS = [EVIDENCE, MATCH_SCORE, INLIERS, TRANSFORM, SHARE_A, SHARE_B, A_TO_B]


def chunks_by_locality(pairs: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """`pairs` (row_a, row_b, ...) cut into chunks of at most `size` pairs that each touch few images.

    Each chunk extracts the features of every image it touches, so it touches at most 2 x `size` images whatever
    the order; candidate partners lie anywhere in row order, though, so chunks in row order would extract many
    images again. Reverse Cuthill-McKee over the candidate graph orders the images so that partners sit close
    together, and the pairs are taken in that order (by their earlier image)."""
    if pairs.empty:
        return []
    ends = np.concatenate([pairs[PAIR_A].to_numpy(), pairs[PAIR_B].to_numpy()])
    images, index = np.unique(ends, return_inverse=True)
    a, b = index[: len(pairs)], index[len(pairs) :]
    graph = csr_matrix((np.ones(len(pairs), np.int8), (a, b)), shape=(len(images), len(images)))
    order = reverse_cuthill_mckee((graph + graph.T).tocsr(), symmetric_mode=True)
    position = np.empty(len(images), np.int64)
    position[order] = np.arange(len(images))
    ranked = np.argsort(np.minimum(position[a], position[b]), kind="stable")
    return [pairs.iloc[ranked[start : start + size]] for start in range(0, len(pairs), size)]


def verify_candidates(
    files: pd.DataFrame,
    pairs: pd.DataFrame,
    settings: VerificationConfig,
    workers: int = 2,
    cache_dir: Path | None = None,
    run_chunks: ChunkMap = run_here,
    chunk_size: int = 5000,
    feature_cache_bytes: int = DEFAULT_FEATURE_CACHE_BYTES,
    concurrent_chunks: int = 1,
) -> pd.DataFrame:
    """The verification stage: candidate pairs (row_a, row_b, similarity) with the columns of `RESULT_COLUMNS`.
    Only accepted pairs (with evidence) are returned. Two rounds: the candidates similarity proposes
    (`select_candidates`), then the pairs that the first round's relations place over each other
    (`tasks.placement.predicted_overlaps`: tiles whose names say nothing and whose shared strip similarity does not
    rank). With `cache_dir`, pairs of
    contents verified before (with the same settings) are not verified again. The pairs to verify run on
    `run_chunks` in chunks of at most `chunk_size` pairs (`chunks_by_locality`). `run_chunks` runs
    `concurrent_chunks` of them at once, so their number is a multiple of that given enough pairs
    (`balanced_size`), and they share the `workers` threads (each at least one): threads inside chunks that already
    run side by side only contend for the GIL (10,500 generated tiles: 119 s with two threads in each of two
    chunks, 83 s with one). The features of their images come from what each process keeps (`FeatureCache`, up
    to `feature_cache_bytes`), so memory is bounded by that budget, not by the dataset. Once every chunk is
    verified, this process's features are dropped (`FEATURE_CACHE`)."""
    candidates = select_candidates(files, pairs, settings, cache_dir)
    chosen = dict(files=files, settings=settings, workers=workers, cache_dir=cache_dir, run_chunks=run_chunks,
                  chunk_size=chunk_size, feature_cache_bytes=feature_cache_bytes, concurrent_chunks=concurrent_chunks)
    matched = verify_chosen(candidates, **chosen)
    # A second round: what the accepted pairs place over each other, unless verified already. (A third added
    # nothing on tiles named by a hash: what the second misses lies in sets of tiles no relation links.)
    placed = predicted_overlaps(matched, settings.overlap_min_coverage)
    placed = placed.merge(candidates[[PAIR_A, PAIR_B]], on=[PAIR_A, PAIR_B], how="left", indicator=True)
    placed = placed.loc[(placed.pop("_merge") == "left_only").to_numpy(), [PAIR_A, PAIR_B]]
    if placed.empty:
        return matched
    placed = placed.merge(pairs[[PAIR_A, PAIR_B, SIMILARITY]], on=[PAIR_A, PAIR_B], how="left")
    more = verify_chosen(placed.assign(**{COLOUR_SIMILARITY: np.nan}), **chosen)
    return pd.concat([matched, more]).sort_values([PAIR_A, PAIR_B]).reset_index(drop=True)


def verify_chosen(
    candidates: pd.DataFrame,
    files: pd.DataFrame,
    settings: VerificationConfig,
    workers: int,
    cache_dir: Path | None,
    run_chunks: ChunkMap,
    chunk_size: int,
    feature_cache_bytes: int,
    concurrent_chunks: int,
) -> pd.DataFrame:
    """The accepted pairs of `candidates` (row_a, row_b, ...), verified as `verify_candidates` describes."""
    by_row = files.set_index(Col.ROW)

    def with_each_image(frame: pd.DataFrame, column: str, names: tuple[str, str]) -> pd.DataFrame:
        """`frame` with `column` of each pair's two files added as `names`, as Arrow strings: numpy would hold a
        Python string for each pair's end (at 800,000 pairs, 185 MB more for the keys alone)."""
        values = by_row[column].astype(str)
        ends = (PAIR_A, PAIR_B)
        return frame.assign(**{name: values.reindex(frame[end]).array for name, end in zip(names, ends)})

    keys, paths = (PairCache.KEY_A, PairCache.KEY_B), ("path_a", "path_b")
    cache = PairCache(cache_dir, f"{METHOD_VERSION} {settings.model_dump_json()}") if cache_dir else None
    known, todo = cache.split(with_each_image(candidates, Col.SHA256, keys), RESULT_COLUMNS) if cache \
        else (None, candidates)
    # The chunks carry what verification reads and no more: at 100,000 images they hold 800,000 pairs.
    size = balanced_size(len(todo), chunk_size, concurrent_chunks)
    chunks = chunks_by_locality(with_each_image(todo[candidates.columns], Col.PATH, paths), size)
    del todo
    threads = max(1, workers // concurrent_chunks)
    parts = run_chunks("verify", verify_pairs, chunks, settings=settings, workers=threads,
                       feature_cache_bytes=feature_cache_bytes) if chunks else []
    del chunks
    # Every chunk is verified: this process's features are of no more use to this run. Gathering and caching the
    # results is when a run's memory peaks (at 100,000 images, with a full feature cache beside them).
    FEATURE_CACHE.limit(0)
    release_free_memory()
    verified = pd.concat(parts).drop(columns=list(paths)) if parts else candidates.iloc[0:0].assign(
        **{EVIDENCE: "", MATCH_SCORE: 0.0, INLIERS: 0, TRANSFORM: "", SHARE_A: 0.0, SHARE_B: 0.0,
           A_TO_B: pd.Series(dtype=object)}
    )
    del parts
    if cache:
        cache.add(with_each_image(verified, Col.SHA256, keys), RESULT_COLUMNS)
        verified = pd.concat([known.drop(columns=list(keys)), verified]) if len(known) else verified
    matched = verified[verified[EVIDENCE] != ""].sort_values([PAIR_A, PAIR_B])
    return matched.reset_index(drop=True)
