"""Geometric verification of candidate image pairs.

Embedding similarity (fastdup) ranks candidates but cannot tell a crop, rotation or overlapping tile from a
different scene of the same texture. This step settles each candidate pair with local features: ORB keypoints
matched with a ratio test, then a RANSAC fit of a similarity transform (rotation, uniform scale, translation).
Mirror images are handled by also matching against descriptors computed on the horizontally flipped image,
because ORB descriptors are not invariant to reflection.

Features are computed once per image at a reduced working size (`extract_features`) and reused for every pair
that image takes part in (`verify_pairs`). They hold only numpy arrays, so they can be pickled and cached.
`verify_pairs` is a two-pass cascade: the few pairs rejected at the working size but with some consistent
matches are matched again on features of a larger working image, computed only for those pairs' images.
"""

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from tasks.cache import PairCache
from tasks.chunks import ChunkMap, chunked, run_here
from tasks.config import VerificationConfig
from tasks.imagestats import SIGNATURE, eight_bit
from tasks.progress import progress
from tasks.schema import Col
from tasks.similarity import PAIR_A, PAIR_B, SIMILARITY, neighbours_by_row

Relation = Literal["duplicate", "overlap", "none"]
DUPLICATE, OVERLAP = "duplicate", "overlap"
# Columns verify_pairs adds to a frame of pairs.
RELATION, MATCH_SCORE, INLIERS, TRANSFORM, COVERAGE = "relation", "match_score", "inliers", "transform", "coverage"
COLOUR_SIMILARITY = "colour_similarity"

# A rotation within this many degrees of a multiple of 90 is reported as that multiple.
_RIGHT_ANGLE_TOLERANCE_DEG = 10.0
# A size ratio within this distance of 1 (in original pixels) is reported as unchanged size.
_SAME_SCALE_TOLERANCE = 0.1
# RANSAC stops early once this sure of its best fit; the iteration cap bounds the time spent on non-matches.
_RANSAC_CONFIDENCE = 0.995
_RANSAC_MAX_ITERATIONS = 2000
# What Pillow raises on files it cannot decode (missing, truncated, not an image, too large).
_UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ImageFeatures:
    """ORB features of one image and of its horizontal mirror, in working-image pixel coordinates.

    `points`/`descriptors` come from the image itself, strongest corner first; `mirror_points`/`mirror_descriptors`
    describe the strongest `mirror_features` of them on the image flipped left-right (coordinates in the flipped
    frame). `scale` converts original to working pixels.
    """

    path: str
    width: int
    height: int
    scale: float
    points: np.ndarray
    descriptors: np.ndarray
    mirror_points: np.ndarray
    mirror_descriptors: np.ndarray


@dataclass(frozen=True)
class Verification:
    """Outcome of verifying one pair.

    `relation`: "duplicate" (the smaller image lies within the other), "overlap" (they share part of their
    ground) or "none". `score`: share of one-to-one ratio-test matches that are geometric inliers (0 when too
    few matches to fit). `inliers`: number of those inliers. `transform`: how b relates to a, '+'-joined from
    same, hflip, vflip, rotate90/rotate180/rotate270 (clockwise), rotate (other angle), rescale, crop, shift;
    empty when relation is "none". `coverage`: share of the smaller image inside the shared region.
    """

    relation: Relation
    score: float
    inliers: int
    transform: str
    coverage: float


NO_MATCH = Verification(relation="none", score=0.0, inliers=0, transform="", coverage=0.0)


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


def _as_arrays(keypoints: tuple[cv2.KeyPoint, ...], descriptors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint positions (N x 2 float32) and descriptors (N x 32 uint8), empty arrays when there are none."""
    if descriptors is None or not keypoints:
        return np.empty((0, 2), np.float32), np.empty((0, 32), np.uint8)
    return np.array([keypoint.pt for keypoint in keypoints], dtype=np.float32), descriptors


def extract_features(path: str | Path, settings: VerificationConfig = VerificationConfig()) -> ImageFeatures | None:
    """Compute ORB features of the image at `path` and of its mirror image; None if it cannot be decoded."""
    loaded = _load_working_gray(str(path), settings.max_side)
    if loaded is None:
        return None
    gray, scale = loaded
    # A global stretch (not CLAHE, whose tiles change under cropping) cancels brightness and contrast edits and
    # lifts smooth scenes such as water and grass towards the FAST threshold.
    gray = _stretch_contrast(gray, settings.contrast_clip)
    keypoints, descriptors = _orb(settings, settings.fast_threshold).detectAndCompute(gray, None)
    if len(keypoints) < settings.n_features // 2 and settings.low_texture_fast_threshold < settings.fast_threshold:
        keypoints, descriptors = _orb(settings, settings.low_texture_fast_threshold).detectAndCompute(gray, None)
    # Strongest corners first, so that a prefix of the arrays is the most repeatable subset of the keypoints.
    order = sorted(range(len(keypoints)), key=lambda i: -keypoints[i].response)
    keypoints = tuple(keypoints[i] for i in order)
    descriptors = descriptors[order] if descriptors is not None else None
    # Detection is mirror-symmetric, so reflecting the keypoints (position and orientation) and describing them
    # on the flipped image gives nearly what detecting on the flipped image would, without detecting twice. Only
    # the strongest are mirrored: a mirrored copy shares most of its corners, so a few suffice, and the mirror
    # retry then costs a fraction of the direct match.
    width = gray.shape[1]
    mirrored_keypoints = [
        cv2.KeyPoint(width - 1 - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response, k.octave)
        for k in keypoints[: settings.mirror_features]
    ]
    mirrored_keypoints, mirror_descriptors = _orb(settings, settings.fast_threshold).compute(
        cv2.flip(gray, 1), mirrored_keypoints
    )
    points, descriptors = _as_arrays(keypoints, descriptors)
    mirror_points, mirror_descriptors = _as_arrays(mirrored_keypoints, mirror_descriptors)
    return ImageFeatures(
        path=str(path),
        width=width,
        height=gray.shape[0],
        scale=scale,
        points=points,
        descriptors=descriptors,
        mirror_points=mirror_points,
        mirror_descriptors=mirror_descriptors,
    )


@dataclass(frozen=True)
class _Fit:
    """A RANSAC similarity fit from a's (possibly mirrored) working frame to b's."""

    matrix: np.ndarray
    inliers: int
    matches: int
    mirrored: bool


def _fit(
    points_a: np.ndarray, descriptors_a: np.ndarray, b: ImageFeatures, mirrored: bool, settings: VerificationConfig
) -> _Fit | None:
    """Ratio-test matches from a to b and the RANSAC similarity transform they support, if enough of them."""
    if len(descriptors_a) < settings.min_inliers or len(b.descriptors) < 2:
        return None
    # batchDistance returns the two nearest neighbours as arrays, avoiding per-match Python objects.
    distances, neighbours = cv2.batchDistance(
        descriptors_a, b.descriptors, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2
    )
    passing = np.flatnonzero(distances[:, 0] < settings.ratio_test * distances[:, 1])
    # Keep only the closest of several a keypoints matched to one b keypoint: many-to-one matches let RANSAC
    # collapse a's content onto a point of b and pile up inliers between different scenes of one texture.
    passing = passing[np.argsort(distances[passing, 0], kind="stable")]
    _, first = np.unique(neighbours[passing, 0], return_index=True)
    passing = passing[first]
    if len(passing) < settings.min_inliers:
        return None
    matrix, inlier_mask = cv2.estimateAffinePartial2D(
        points_a[passing],
        b.points[neighbours[passing, 0]],
        method=cv2.RANSAC,
        ransacReprojThreshold=settings.ransac_threshold,
        maxIters=_RANSAC_MAX_ITERATIONS,
        confidence=_RANSAC_CONFIDENCE,
    )
    if matrix is None:
        return None
    return _Fit(matrix=matrix, inliers=int(inlier_mask.sum()), matches=len(passing), mirrored=mirrored)


def _coverages(fit: _Fit, a: ImageFeatures, b: ImageFeatures) -> tuple[float, float]:
    """Shares of a's and of b's area that lie in the region both images show, under the fitted transform."""
    corners_a = np.array([[0, 0], [a.width, 0], [a.width, a.height], [0, a.height]], dtype=np.float32)
    mapped = (corners_a @ fit.matrix[:, :2].T + fit.matrix[:, 2]).astype(np.float32)
    corners_b = np.array([[0, 0], [b.width, 0], [b.width, b.height], [0, b.height]], dtype=np.float32)
    shared_area, _ = cv2.intersectConvexConvex(mapped, corners_b)
    area_scale = abs(float(np.linalg.det(fit.matrix[:, :2])))
    coverage_a = shared_area / (area_scale * a.width * a.height)
    coverage_b = shared_area / (b.width * b.height)
    return min(1.0, coverage_a), min(1.0, coverage_b)


def _describe_transform(
    fit: _Fit, scale_change: float, coverage_a: float, coverage_b: float, relation: Relation, settings: VerificationConfig
) -> str:
    """Short '+'-joined label of how b relates to a."""
    angle = math.degrees(math.atan2(fit.matrix[1, 0], fit.matrix[0, 0])) % 360.0
    quarter_turns = round(angle / 90.0) % 4
    off_right_angle = abs(angle - 90.0 * round(angle / 90.0)) > _RIGHT_ANGLE_TOLERANCE_DEG
    parts: list[str] = []
    if fit.mirrored and quarter_turns == 2 and not off_right_angle:
        # A left-right flip followed by a half turn is an upside-down flip.
        parts.append("vflip")
    else:
        if fit.mirrored:
            parts.append("hflip")
        if off_right_angle:
            parts.append("rotate")
        elif quarter_turns:
            parts.append(f"rotate{90 * quarter_turns}")
    if abs(scale_change - 1.0) > _SAME_SCALE_TOLERANCE:
        parts.append("rescale")
    if relation == "overlap":
        parts.append("shift")
    elif min(coverage_a, coverage_b) < settings.duplicate_min_coverage:
        parts.append("crop")
    return "+".join(parts) if parts else "same"


def _judge(fit: _Fit | None, a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig) -> Verification:
    """Turn a fit into a verdict: accepted only with enough inliers, a plausible scale and a shared region."""
    if fit is None:
        return NO_MATCH
    score = fit.inliers / fit.matches
    working_scale_change = math.sqrt(abs(float(np.linalg.det(fit.matrix[:, :2]))))
    # A fit that shrinks or grows a's content beyond any plausible resize has collapsed onto a few points of b.
    if not 1.0 / settings.max_scale_change <= working_scale_change <= settings.max_scale_change:
        return Verification(relation="none", score=score, inliers=fit.inliers, transform="", coverage=0.0)
    coverage_a, coverage_b = _coverages(fit, a, b)
    coverage = max(coverage_a, coverage_b)
    too_weak = fit.inliers < settings.min_inliers or score < settings.min_inlier_ratio
    if too_weak or coverage < settings.overlap_min_coverage:
        return Verification(relation="none", score=score, inliers=fit.inliers, transform="", coverage=coverage)
    relation: Relation = "duplicate" if coverage >= settings.duplicate_min_coverage else "overlap"
    # Size ratio of b's content to a's in original pixels, undoing each image's shrink to working size.
    scale_change = working_scale_change * a.scale / b.scale
    transform = _describe_transform(fit, scale_change, coverage_a, coverage_b, relation, settings)
    return Verification(relation=relation, score=score, inliers=fit.inliers, transform=transform, coverage=coverage)


def verify_pair(a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig = VerificationConfig()) -> Verification:
    """Decide whether `a` and `b` show the same ground ("duplicate"), part of it ("overlap") or not ("none").

    Matches are searched from a to b, so `transform` and `score` describe b relative to a; swapping the pair can
    change the counts slightly near the thresholds.
    """
    direct = _judge(_fit(a.points, a.descriptors, b, mirrored=False, settings=settings), a, b, settings)
    # Descriptor matching is nearly all of a pair's time: try the mirror image only when the direct match fails.
    if direct.relation != "none":
        return direct
    mirror_fit = _fit(a.mirror_points, a.mirror_descriptors, b, mirrored=True, settings=settings)
    mirrored = _judge(mirror_fit, a, b, settings)
    if mirrored.relation != "none" or mirrored.inliers > direct.inliers:
        return mirrored
    return direct


def _refined(settings: VerificationConfig) -> VerificationConfig:
    """The settings of the second, finer pass: a larger working image and more keypoints, otherwise unchanged."""
    return settings.model_copy(update={"max_side": settings.refine_max_side, "n_features": settings.refine_n_features})


def verify_pairs(pairs: pd.DataFrame, settings: VerificationConfig = VerificationConfig(), workers: int = 2) -> pd.DataFrame:
    """Verify every row of `pairs` (columns path_a, path_b).

    Returns a copy with columns relation, match_score, inliers, transform and coverage added. Features are
    extracted once per distinct path; a pair with an unreadable image gets relation "none". `workers` threads
    share the work (OpenCV releases the GIL), with OpenCV's own threading off meanwhile to avoid oversubscription.

    A cascade: every pair is matched at the working size, which settles copies cheaply. A pair rejected there
    that still showed `refine_min_inliers` consistent matches is matched again on finer features (computed only
    for its images): a 2x zoom or a thin shared strip leaves too few keypoints at the working size, while
    unrelated pairs rarely reach that many inliers, so the finer pass stays a small share of the time.
    """
    paths = list(dict.fromkeys([*pairs["path_a"], *pairs["path_b"]]))
    fine_settings = _refined(settings)
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            extracted = pool.map(lambda path: extract_features(path, settings), paths)
            features = dict(zip(paths, progress(extracted, "keypoints", len(paths), "image")))

            def verify_row(path_a: str, path_b: str) -> Verification:
                features_a, features_b = features[path_a], features[path_b]
                if features_a is None or features_b is None:
                    return NO_MATCH
                return verify_pair(features_a, features_b, settings)

            verified = pool.map(verify_row, pairs["path_a"], pairs["path_b"])
            results = list(progress(verified, "verify", len(pairs), "pair"))
            doubtful = [
                index
                for index, result in enumerate(results)
                if result.relation == "none" and result.inliers >= settings.refine_min_inliers
            ]
            doubtful_pairs = [(pairs["path_a"].iloc[index], pairs["path_b"].iloc[index]) for index in doubtful]
            fine_paths = list(dict.fromkeys(path for pair in doubtful_pairs for path in pair))
            fine = dict(zip(fine_paths, pool.map(lambda path: extract_features(path, fine_settings), fine_paths)))

            def refine_row(pair: tuple[str, str]) -> Verification:
                fine_a, fine_b = fine[pair[0]], fine[pair[1]]
                return NO_MATCH if fine_a is None or fine_b is None else verify_pair(fine_a, fine_b, fine_settings)

            for index, refined in zip(doubtful, pool.map(refine_row, doubtful_pairs)):
                if refined.relation != "none":
                    results[index] = refined
    finally:
        cv2.setNumThreads(previous_threads)
    verified = pairs.copy()
    verified[RELATION] = [result.relation for result in results]
    verified[MATCH_SCORE] = [result.score for result in results]
    verified[INLIERS] = [result.inliers for result in results]
    verified[TRANSFORM] = [result.transform for result in results]
    verified[COVERAGE] = [result.coverage for result in results]
    return verified


def _unordered(rows: np.ndarray, others: np.ndarray, similarity: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {PAIR_A: np.minimum(rows, others), PAIR_B: np.maximum(rows, others), SIMILARITY: similarity}
    )


def signature_neighbours(signatures: np.ndarray, rows: np.ndarray, k: int, chunk: int = 2048) -> pd.DataFrame:
    """Each row's k most similar rows by colour signature (unordered pairs, similarity = cosine of signatures).

    Computed in chunks so memory stays at chunk x n similarities however large the dataset."""
    n = len(rows)
    k = min(k, n - 1)
    if k < 1:
        return _unordered(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    sources, targets, values = [], [], []
    for start in range(0, n, chunk):
        block = signatures[start : start + chunk] @ signatures.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -1.0  # not its own neighbour
        nearest = np.argpartition(-block, k - 1, axis=1)[:, :k]
        sources.append(np.repeat(rows[start : start + chunk], k))
        targets.append(rows[nearest.ravel()])
        values.append(np.take_along_axis(block, nearest, axis=1).ravel())
    return _unordered(np.concatenate(sources), np.concatenate(targets), np.concatenate(values))


def select_candidates(files: pd.DataFrame, pairs: pd.DataFrame, settings: VerificationConfig) -> pd.DataFrame:
    """The pairs worth verifying, with their embedding and colour similarities.

    Each image's nearest neighbours by embedding and by colour signature are proposed (a rotated or mirrored
    copy keeps its colours but is sometimes not among the embedding's nearest neighbours); a proposal is kept
    when either similarity is high. Copies that are cropped, rotated or mirrored often score well below the
    seed's duplicate threshold, so neither floor is a duplicate threshold: verification decides."""
    ranked = neighbours_by_row(pairs).groupby("row", sort=False).head(settings.candidates_per_image)
    by_embedding = _unordered(ranked["row"].to_numpy(), ranked["other"].to_numpy(), ranked[SIMILARITY].to_numpy())
    readable = files[files[SIGNATURE].notna()]
    signatures = np.stack(readable[SIGNATURE].to_numpy()) if len(readable) else np.empty((0, 0), np.float32)
    rows = readable[Col.ROW].to_numpy(dtype=np.int64)
    by_colour = signature_neighbours(signatures, rows, settings.candidates_per_image)
    proposals = pd.concat([by_embedding, by_colour]).drop_duplicates([PAIR_A, PAIR_B]).drop(columns=SIMILARITY)
    proposals = proposals.merge(pairs[[PAIR_A, PAIR_B, SIMILARITY]], on=[PAIR_A, PAIR_B], how="left")
    position = pd.Series(np.arange(len(rows)), index=rows)
    proposals[COLOUR_SIMILARITY] = np.einsum(
        "ij,ij->i",
        signatures[position.reindex(proposals[PAIR_A]).to_numpy()],
        signatures[position.reindex(proposals[PAIR_B]).to_numpy()],
    ) if len(proposals) else np.empty(0)
    worth = (proposals[SIMILARITY].fillna(0.0) >= settings.candidate_similarity) | (
        proposals[COLOUR_SIMILARITY] >= settings.candidate_colour_similarity
    )
    return proposals[worth].sort_values([PAIR_A, PAIR_B]).reset_index(drop=True)


RESULT_COLUMNS = [RELATION, MATCH_SCORE, INLIERS, TRANSFORM, COVERAGE]


def verify_candidates(
    files: pd.DataFrame,
    pairs: pd.DataFrame,
    settings: VerificationConfig,
    workers: int = 2,
    cache_dir: Path | None = None,
    run_chunks: ChunkMap = run_here,
    chunk_size: int = 5000,
) -> pd.DataFrame:
    """The verification stage: candidate pairs (row_a, row_b, similarity) with relation, match_score, inliers,
    transform and coverage. Only pairs whose relation is not "none" are returned. With `cache_dir`, pairs of
    contents verified before (with the same settings) are not verified again. The pairs to verify run in chunks
    of `chunk_size` on `run_chunks`; each chunk extracts the features of its own images, so memory is bounded by
    the chunk, not the dataset."""
    candidates = select_candidates(files, pairs, settings)
    by_row = files.set_index(Col.ROW)
    located = candidates.assign(
        path_a=by_row[Col.PATH].reindex(candidates[PAIR_A]).to_numpy(),
        path_b=by_row[Col.PATH].reindex(candidates[PAIR_B]).to_numpy(),
        **{PairCache.KEY_A: by_row[Col.SHA256].reindex(candidates[PAIR_A]).astype(str).to_numpy(),
           PairCache.KEY_B: by_row[Col.SHA256].reindex(candidates[PAIR_B]).astype(str).to_numpy()},
    )
    cache = PairCache(cache_dir, settings.model_dump_json()) if cache_dir else None
    known, todo = cache.split(located, RESULT_COLUMNS) if cache else (None, located)
    verified = pd.concat(
        run_chunks("verify", verify_pairs, chunked(todo, chunk_size), settings=settings, workers=workers)
    ) if len(todo) else todo.assign(
        **{RELATION: pd.Series(dtype="string"), MATCH_SCORE: 0.0, INLIERS: 0, TRANSFORM: "", COVERAGE: 0.0}
    )
    if cache:
        cache.add(verified, RESULT_COLUMNS)
        verified = pd.concat([known, verified]) if len(known) else verified
    matched = verified[verified[RELATION] != "none"].sort_values([PAIR_A, PAIR_B])
    return matched.drop(columns=["path_a", "path_b", PairCache.KEY_A, PairCache.KEY_B]).reset_index(drop=True)
