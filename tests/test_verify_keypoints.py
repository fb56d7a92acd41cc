"""Tests of the keypoint stages (`tasks.verify.keypoints`) and the detail agreement that confirms their fits
(`tasks.verify.agreement`)."""

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.config import VerificationConfig
from tasks.verify import Reason, Stage, extract_features, verify_pair
from tasks.verify.agreement import KEYPOINT_GRID, cell_sums, detail_agreement
from tasks.verify.keypoints import (
    Fit, alignments, fit, judge, match_keypoints, narrowest_spread, one_to_one_matches, reversed_fit, stretch,
)
from tests.conftest import save, textured_scene
from tests.test_verify import TRANSFORMS, features_of, relation, rsscn7_tile


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_a_fit_from_the_copy_back_reads_as_the_copy_from_the_original(
    name: str, scene: np.ndarray, scene_path: Path, tmp_path: Path
) -> None:
    """The finer pass also matches from b to a (`both_ways`); that fit, turned round (`reversed_fit`), must describe
    b from a as a fit from a does."""
    edit, quality, expected_transform = TRANSFORMS[name]
    copy_path = save(tmp_path / f"{name}.jpg", edit(scene), quality)
    original, copy = extract_features(scene_path), extract_features(copy_path)
    assert original is not None and copy is not None
    config = VerificationConfig()
    fits = [fit(copy, original, mirrored, config) for mirrored in (False, True)]

    verdicts = [judge(reversed_fit(found, original, copy), original, copy, config) for found in fits
                if isinstance(found, Fit)]

    accepted = [verdict for verdict in verdicts if verdict.accepted]
    assert accepted and accepted[0].transform == expected_transform
    assert accepted[0].share_b >= 0.9


@pytest.mark.parametrize(("thresholds", "reason"), [
    ({"min_inliers": 1000}, Reason.TOO_FEW_KEYPOINTS),  # fewer keypoints than the inliers asked for
    ({"min_inliers": 240}, Reason.TOO_FEW_MATCHES),  # most of 250 keypoints, but fewer one-to-one matches
    ({"min_inlier_ratio": 1.0}, Reason.LOW_INLIER_RATIO),
    ({"overlap_min_coverage": 0.9}, Reason.SMALL_OVERLAP),  # they share two thirds of each
    ({"min_detail_agreement": 1.0}, Reason.DETAIL_DISAGREES),
])
def test_a_keypoint_rejection_records_its_stage_and_reason(
    thresholds: dict, reason: Reason, scene: np.ndarray, tmp_path: Path
) -> None:
    """Two windows of one scene shifted by a third, accepted with the default thresholds, rejected for the one made
    too strict."""
    first, second = features_of(tmp_path, "a", scene[0:300, 0:300]), features_of(tmp_path, "b", scene[0:300, 100:400])
    assert match_keypoints(first, second, VerificationConfig()).accepted

    result = match_keypoints(first, second, VerificationConfig(**thresholds), Stage.FINE_KEYPOINTS)

    assert (result.accepted, result.evidence, result.transform, result.a_to_b) == (False, "", "", None)
    assert (result.stage, result.reason) == (Stage.FINE_KEYPOINTS, reason)
    assert math.isnan(result.correlation)
    assert math.isnan(result.inlier_ratio) == (reason in {Reason.TOO_FEW_KEYPOINTS, Reason.TOO_FEW_MATCHES})


def test_a_pair_with_too_few_inliers_is_rejected_for_it(tmp_path: Path) -> None:
    """Different scenes of one texture fit a few inliers by chance, never `min_inliers`."""
    first, second = (features_of(tmp_path, f"scene{seed}", textured_scene(seed)) for seed in (2, 3))
    result = match_keypoints(first, second, VerificationConfig())

    assert not result.accepted and result.stage == Stage.KEYPOINTS
    assert result.reason in {Reason.TOO_FEW_MATCHES, Reason.NO_FIT, Reason.TOO_FEW_INLIERS, Reason.SCALE_CHANGE}
    assert result.inliers < VerificationConfig().min_inliers


def stretched(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (image.shape[1] * 7 // 10, image.shape[0]), interpolation=cv2.INTER_AREA)


def sheared(image: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(image, np.float32([[1, 0.15, 0], [0, 1, 0]]), image.shape[1::-1])


def seen_at_an_angle(image: np.ndarray) -> np.ndarray:
    side = image.shape[0]
    corners = np.float32([[0, 0], [side, 0], [side, side], [0, side]])
    moved = np.float32([[0.06, 0.02], [0.95, 0.07], [0.98, 1.0], [0.03, 0.93]]) * side
    return cv2.warpPerspective(image, cv2.getPerspectiveTransform(corners, moved), (side, side))


@pytest.mark.parametrize("edit", [stretched, sheared, seen_at_an_angle])
def test_a_copy_the_similarity_fit_misaligns_is_confirmed_by_a_refit(
    edit: Callable[[np.ndarray], np.ndarray], tmp_path: Path
) -> None:
    """A stretched, sheared or obliquely viewed copy of a real tile: under the similarity fit its detail does not
    line up away from the inliers, under an affine fit or homography of the same matches it does."""
    original = cv2.imread(str(rsscn7_tile("cIndustry/c155.jpg")))
    first, copy = features_of(tmp_path, "original", original), features_of(tmp_path, "copy", edit(original))
    config = VerificationConfig()
    found = fit(first, copy, False, config)
    assert isinstance(found, Fit)
    agreements = [detail_agreement(a_to_b, inliers, first, copy, KEYPOINT_GRID)
                  for a_to_b, inliers in alignments(found, first, copy)]

    assert agreements[0] < config.min_detail_agreement <= max(agreements[1:])
    assert relation(verify_pair(first, copy)) == "duplicate"


def test_written_out_linear_algebra_matches_numpy() -> None:
    """Cell sums, stretch and spread are written out (numpy's linear algebra is slow beside busy threads); the
    spread is robust to a stray point off a line."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(40, 50, 3))
    rows, columns = np.array([2, 9, 20, 31, 38]), np.array([0, 12, 13, 30, 50])
    expected = [[values[rows[i] : rows[i + 1], columns[j] : columns[j + 1]].sum(axis=(0, 1)) for j in range(4)]
                for i in range(4)]
    assert np.allclose(cell_sums(values, rows, columns), expected)
    linear = rng.normal(size=(2, 2))
    singular = np.linalg.svd(linear, compute_uv=False)
    assert stretch(linear) == pytest.approx(singular[0] / singular[1])
    points = rng.normal(size=(4000, 2)) @ rng.normal(size=(2, 2))
    smaller_variance = np.linalg.eigvalsh(np.cov(points.T, bias=True))[0]
    assert narrowest_spread(points) == pytest.approx(math.sqrt(smaller_variance), rel=0.1)
    along_a_caption = np.column_stack([np.linspace(10, 110, 17), np.full(17, 120.0)])
    assert narrowest_spread(np.vstack([along_a_caption, [[60.0, 20.0]]])) < 0.1


@pytest.mark.parametrize("seed", range(20))
def test_one_to_one_matches_keep_the_closest_ratio_test_match_of_each_target(seed: int) -> None:
    """The reference: the ratio test, a stable sort by distance and numpy's first occurrence of each target,
    which also orders the matches by target (RANSAC samples them in that order)."""
    rng = np.random.default_rng(seed)
    sources, targets = int(rng.integers(1, 60)), int(rng.integers(2, 40))
    nearest = rng.integers(0, 40, sources)
    distances = np.column_stack([nearest, nearest + rng.integers(0, 30, sources)]).astype(np.int32)
    neighbours = rng.integers(0, targets, (sources, 2)).astype(np.int32)
    passing = np.flatnonzero(distances[:, 0] < 0.8 * distances[:, 1])
    passing = passing[np.argsort(distances[passing, 0], kind="stable")]
    expected = passing[np.unique(neighbours[passing, 0], return_index=True)[1]]

    matches = one_to_one_matches(distances, neighbours, 0.8, targets)

    np.testing.assert_array_equal(matches, expected)
