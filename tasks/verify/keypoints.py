"""The keypoint stages: ORB descriptors matched with a ratio test, a RANSAC fit of a similarity transform
(rotation, uniform scale, translation), and the verdict on that fit.

Mirror images are handled by also matching against descriptors computed on the horizontally flipped image,
because ORB descriptors are not invariant to reflection. A fit is confirmed on the detail it did not use
(`tasks.verify.agreement`), under the fit itself or a plausible affine or perspective refit of its matches.
Measurements behind the constants: docs/VERIFICATION.md, "Keypoints".
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numba
import numpy as np

from tasks.config import VerificationConfig
from tasks.geometry import describe, shares, to_unit_map
from tasks.hamming import two_nearest
from tasks.schema import Check
from tasks.verify.agreement import KEYPOINT_GRID, area_scale, detail_agreement
from tasks.verify.features import ImageFeatures
from tasks.verify.thumbnails import detail_of_each
from tasks.verify.verdict import Reason, Stage, Verification

# Lowe's ratio test: a match's descriptor distance must be below this share of the second best's.
RATIO_TEST: float = 0.8
# RANSAC reprojection tolerance, in working-image pixels; RANSAC stops early once this sure of its best fit, and
# the iteration cap bounds the time spent on non-matches.
RANSAC_THRESHOLD: float = 3.0
RANSAC_CONFIDENCE: float = 0.995
RANSAC_MAX_ITERATIONS: int = 2000
# Largest size ratio between the two working images' contents: a fit that shrinks or grows a's content beyond any
# plausible resize has collapsed onto a few points of b.
MAX_SCALE_CHANGE: float = 4.0
# A copy stretched, sheared or seen at an angle misaligns under a similarity fit, so an affine fit and a
# homography of the same matches are tried too; only plausible ones: an affine fit stretching one direction at
# most MAX_STRETCH times the other, a homography whose projective scale varies at most MAX_PERSPECTIVE times
# over the image, and each only when its inliers spread MIN_SPREAD thumbnail pixels (a robust standard deviation)
# across their main direction: matches along a line of text leave both fits free to turn the rest of the image
# anywhere. (The similarity fit's own inliers may lie in a band: for a copy stretched 0.7x, where the stretch
# stays within RANSAC's tolerance.)
MAX_STRETCH: float = 2.0
MAX_PERSPECTIVE: float = 1.5
MIN_SPREAD: float = 2.0
# The check each keypoint stage's acceptance is recorded as.
_EVIDENCE = {Stage.KEYPOINTS: Check.KEYPOINTS, Stage.FINE_KEYPOINTS: Check.FINE_KEYPOINTS}


@dataclass(frozen=True)
class Fit:
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
def one_to_one_matches(distances: np.ndarray, neighbours: np.ndarray, ratio: float, targets: int) -> np.ndarray:
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


def fit(source: ImageFeatures, target: ImageFeatures, mirrored: bool, config: VerificationConfig) -> Fit | Reason:
    """Ratio-test matches from source's keypoints (or its mirrored ones) to target's, and the RANSAC similarity
    transform they support; if they are too few or RANSAC finds none, the reason."""
    points, descriptors = (source.mirror_points, source.mirror_descriptors) if mirrored else (
        source.points, source.descriptors)
    if len(descriptors) < config.min_inliers or len(target.descriptors) < 2:
        return Reason.TOO_FEW_KEYPOINTS
    distances, neighbours = two_nearest(descriptors, target.descriptors)
    passing = one_to_one_matches(distances, neighbours, RATIO_TEST, len(target.descriptors))
    if len(passing) < config.min_inliers:
        return Reason.TOO_FEW_MATCHES
    matched_source, matched_target = points[passing], target.points[neighbours[passing, 0]]
    matrix, inlier_mask = cv2.estimateAffinePartial2D(
        matched_source,
        matched_target,
        method=cv2.RANSAC,
        ransacReprojThreshold=RANSAC_THRESHOLD,
        maxIters=RANSAC_MAX_ITERATIONS,
        confidence=RANSAC_CONFIDENCE,
    )
    if matrix is None:
        return Reason.NO_FIT
    if mirrored:
        matched_source = _unmirrored(matched_source, source.width)
    inliers = inlier_mask.ravel().astype(bool)
    return Fit(matrix=matrix, inliers=int(inliers.sum()), matches=len(passing), mirrored=mirrored,
               matched_a=matched_source, matched_b=matched_target, inlier_mask=inliers)


def _unmirrored(points: np.ndarray, width: int) -> np.ndarray:
    """Points of an image flipped left-right, in the image's own frame (mirrored keypoints lie at width - 1 - x)."""
    return np.column_stack([width - 1 - points[:, 0], points[:, 1]]).astype(np.float32)


def reversed_fit(fit: Fit, a: ImageFeatures, b: ImageFeatures) -> Fit:
    """A fit from b's (possibly mirrored) frame to a's, turned into the fit from a's frame to b's that `judge`
    reads: its inverse, and for a mirrored fit (a = M flip_b(b), so b = flip_b M^-1 flip_a
    flip_a(a), where flip_w(x, y) = (w - 1 - x, y) as mirrored keypoints are placed) that inverse between the two
    flips, written out. (numpy's 3 x 3 inverse took 2 ms a call beside other busy threads: OpenBLAS's.)"""
    inverse = cv2.invertAffineTransform(fit.matrix)
    if fit.mirrored:
        (p, q, shift_x), (r, s, shift_y) = inverse
        inverse = np.array([[p, -q, b.width - 1 - p * (a.width - 1) - shift_x],
                            [-r, s, r * (a.width - 1) + shift_y]])
    return Fit(matrix=inverse, inliers=fit.inliers, matches=fit.matches, mirrored=fit.mirrored,
               matched_a=fit.matched_b, matched_b=fit.matched_a, inlier_mask=fit.inlier_mask)


def _working_map(fit: Fit, a: ImageFeatures) -> np.ndarray:
    """The fit as a 3 x 3 map from a's working frame to b's: a mirrored fit maps from a's mirror image, so a is
    flipped first (as mirrored keypoints are placed, x -> width - 1 - x)."""
    flip = np.array([[-1.0, 0.0, a.width - 1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if fit.mirrored else np.eye(3)
    return np.vstack([fit.matrix, [0.0, 0.0, 1.0]]) @ flip


def _unit_map(fit: Fit, a: ImageFeatures, b: ImageFeatures) -> np.ndarray:
    """The fit as a map from a's unit square to b's."""
    return to_unit_map(_working_map(fit, a), (a.width, a.height), (b.width, b.height))


def alignments(fit: Fit, a: ImageFeatures, b: ImageFeatures) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Maps (3 x 3) from a's thumbnail to b's under which to confirm `fit`, each with its inliers' places in b's
    working frame: the fit itself, then a plausible affine fit and homography of its matches. Lazy: a later map is
    fitted only if the earlier ones did not confirm."""
    a_scale, b_scale = a.thumbnail.shape[1] / a.width, b.thumbnail.shape[1] / b.width
    to_thumbnail_b = np.diag([b_scale, b_scale, 1.0])
    from_thumbnail_a = np.diag([1 / a_scale, 1 / a_scale, 1.0])
    similarity = to_thumbnail_b @ _working_map(fit, a) @ from_thumbnail_a
    yield similarity, fit.matched_b[fit.inlier_mask]
    thumbnail_a, thumbnail_b = fit.matched_a * a_scale, fit.matched_b * b_scale
    tolerance = RANSAC_THRESHOLD * b_scale

    height, width = a.thumbnail.shape
    corners = np.array([[0.0, 0.0, 1.0], [width, 0.0, 1.0], [0.0, height, 1.0], [width, height, 1.0]])

    def plausible(a_to_b: np.ndarray, mask: np.ndarray) -> bool:
        inliers = thumbnail_b[mask.ravel().astype(bool)]
        if len(inliers) < 3 or narrowest_spread(inliers) < MIN_SPREAD:
            return False
        projective = corners @ a_to_b[2]
        if projective.min() <= 0 or projective.max() > MAX_PERSPECTIVE * projective.min():
            return False
        # A homography's linear part, scaled as at the thumbnail's centre.
        return stretch(a_to_b[:2, :2] / (a_to_b[2] @ [width / 2, height / 2, 1.0])) <= MAX_STRETCH

    affine, mask = cv2.estimateAffine2D(thumbnail_a, thumbnail_b, method=cv2.RANSAC, ransacReprojThreshold=tolerance)
    if affine is not None:
        affine = np.vstack([affine, [0.0, 0.0, 1.0]])
        if plausible(affine, mask):
            yield affine, fit.matched_b[mask.ravel().astype(bool)]
    if len(thumbnail_a) >= 4:
        homography, mask = cv2.findHomography(thumbnail_a, thumbnail_b, cv2.RANSAC, tolerance)
        if homography is not None and plausible(homography, mask):
            yield homography, fit.matched_b[mask.ravel().astype(bool)]


def narrowest_spread(points: np.ndarray) -> float:
    """How widely `points` (N x 2) spread across their main direction, robustly: the median absolute deviation of
    their offsets from the main line, scaled to a standard deviation. A line of matches along a caption plus one
    stray match far off it spreads by nothing, where a standard deviation would call it spread."""
    centred = points - points.mean(axis=0)
    xx, yy = (centred**2).mean(axis=0)
    xy = float((centred[:, 0] * centred[:, 1]).mean())
    angle = 0.5 * math.atan2(2 * xy, xx - yy)  # the covariance's main axis, written out as for `stretch`
    offsets = centred @ np.array([-math.sin(angle), math.cos(angle)])
    return 1.4826 * float(np.median(np.abs(offsets - np.median(offsets))))


def stretch(linear: np.ndarray) -> float:
    """How many times more the 2 x 2 map `linear` stretches one direction than another: the ratio of its singular
    values, from their squares' sum (the squared norm) and product (the squared determinant), written out (numpy's
    linear algebra calls into OpenBLAS, slow beside busy threads)."""
    total, determinant = float((linear**2).sum()), area_scale(linear)
    spread = math.sqrt(max(total**2 - 4 * determinant**2, 0.0))
    return math.sqrt((total + spread) / max(total - spread, 1e-12))


def _confirming_map(fit: Fit, a: ImageFeatures, b: ImageFeatures, config: VerificationConfig) -> np.ndarray | None:
    """The map (3 x 3, a's unit square to b's) under which the detail outside the fit's inliers agrees: the fit
    itself or a plausible refit of its matches (`detail_agreement`), the first that does; None if none does.
    Images too small to correlate cannot be checked and stand on their keypoints: the fit's own map."""
    if not a.thumbnail.size or not b.thumbnail.size:
        return _unit_map(fit, a, b)
    detail = detail_of_each()
    for a_to_b, inliers in alignments(fit, a, b):
        if detail_agreement(a_to_b, inliers, a, b, KEYPOINT_GRID, detail) >= config.min_detail_agreement:
            return to_unit_map(a_to_b, a.thumbnail.shape[::-1], b.thumbnail.shape[::-1])
    return None


def judge(fit: Fit | Reason, a: ImageFeatures, b: ImageFeatures, config: VerificationConfig,
          stage: Stage = Stage.KEYPOINTS) -> Verification:
    """Turn a fit into a verdict: accepted only with a plausible scale, enough inliers, a shared region and detail
    that agrees; rejected with the first of these that fails (or with the reason there is no fit)."""
    if isinstance(fit, Reason):
        return Verification(stage=stage, reason=fit)
    inlier_ratio = fit.inliers / fit.matches

    def rejected(reason: Reason, share_a: float = 0.0, share_b: float = 0.0) -> Verification:
        return Verification(stage=stage, reason=reason, inlier_ratio=inlier_ratio, inliers=fit.inliers,
                            share_a=share_a, share_b=share_b)

    working_scale_change = math.sqrt(area_scale(fit.matrix))  # a's content shrunk or grown, in working pixels
    if not 1.0 / MAX_SCALE_CHANGE <= working_scale_change <= MAX_SCALE_CHANGE:
        return rejected(Reason.SCALE_CHANGE)
    share_a, share_b = shares(_unit_map(fit, a, b))
    if fit.inliers < config.min_inliers:
        return rejected(Reason.TOO_FEW_INLIERS, share_a, share_b)
    if inlier_ratio < config.min_inlier_ratio:
        return rejected(Reason.LOW_INLIER_RATIO, share_a, share_b)
    if max(share_a, share_b) < config.overlap_min_coverage:
        return rejected(Reason.SMALL_OVERLAP, share_a, share_b)
    a_to_b = _confirming_map(fit, a, b, config)
    if a_to_b is None:
        return rejected(Reason.DETAIL_DISAGREES, share_a, share_b)
    share_a, share_b = shares(a_to_b)  # under the map that lines the detail up: a stretched copy's refit
    # The fit's linear part in the images' own pixels, undoing each one's shrink to working size (and a mirrored
    # fit's flip, which comes first).
    linear = fit.matrix[:, :2] @ np.diag([-1.0 if fit.mirrored else 1.0, 1.0]) * (a.scale / b.scale)
    return Verification(stage=stage, evidence=_EVIDENCE[stage], inlier_ratio=inlier_ratio, inliers=fit.inliers,
                        transform=describe(linear, share_a, share_b), share_a=share_a, share_b=share_b,
                        a_to_b=a_to_b)


def match_keypoints(a: ImageFeatures, b: ImageFeatures, config: VerificationConfig,
                    stage: Stage = Stage.KEYPOINTS, both_ways: bool = False) -> Verification:
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
            found = fit(source, target, mirrored, config)
            if backwards and isinstance(found, Fit):
                found = reversed_fit(found, a, b)
            verdicts.append(judge(found, a, b, config, stage))
            if verdicts[-1].accepted:
                return verdicts[-1]
    return max(verdicts, key=lambda verdict: verdict.inliers)
