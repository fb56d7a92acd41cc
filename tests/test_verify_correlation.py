"""Tests of the correlation stage (`tasks.verify.correlation`), its placements and every-shift search
(`tasks.verify.placements`), the thumbnails' detail and spectra (`tasks.verify.thumbnails`), and the detail
agreement that confirms a placement (`tasks.verify.agreement`)."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from tasks.config import VerificationConfig
from tasks.schema import Check
from tasks.verify import Reason, Stage, correlate_pair, verify_pair
from tasks.verify import agreement, correlation, features, thumbnails
from tasks.verify.agreement import PLACEMENT_GRID, detail_agreement
from tasks.verify.correlation import COSINES, SINES, packed_cross_power
from tasks.verify.keypoints import match_keypoints
from tasks.verify.placements import (
    SEARCH_MIN_CORRELATION, best_shift, normalised_correlation, overlap, overlap_correlation, search_placements,
)
from tasks.verify.thumbnails import PHASE_LEVELS, THUMBNAIL_SIDE, detail_of_each, fine_detail, spectrum_phases
from tests.conftest import SIZE, textured_scene
from tests.test_verify import features_of, relation, rsscn7_tile, with_overlay, zoomed_in


@pytest.mark.parametrize(("zoom", "label"), [(2.0, "zoom2x"), (1.5, "zoom1.5x")])
def test_zoomed_view_correlates_both_ways(
    zoom: float, label: str, scene: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = VerificationConfig()
    monkeypatch.setattr(features, "CORRELATION_ZOOMS", (1.5, 2.0))
    original = features_of(tmp_path, "original", scene)
    zoomed = features_of(tmp_path, "zoomed", zoomed_in(scene, 90, 130, zoom))

    forward, backward = correlate_pair(original, zoomed), correlate_pair(zoomed, original)

    assert (relation(forward), forward.transform) == ("overlap", label)
    assert backward.transform == label.replace(f"{zoom:g}x", f"{1 / zoom:.2g}x")
    assert forward.correlation >= config.min_correlation and forward.inliers == 0
    assert (forward.stage, forward.evidence) == (Stage.CORRELATION, Check.PHASE_CORRELATION)
    # The zoomed view shows 1 / zoom^2 of the original, all of it shared.
    assert (forward.share_a, forward.share_b) == pytest.approx((1 / zoom**2, 1.0), abs=0.03)
    # Only the zooms the features were made for are tried: without 1.5 the 1.5x view is not found by correlation.
    monkeypatch.setattr(features, "CORRELATION_ZOOMS", (2.0,))
    original, zoomed = (features_of(tmp_path, name, image)
                        for name, image in (("original", scene), ("zoomed", zoomed_in(scene, 90, 130, zoom))))
    assert relation(correlate_pair(original, zoomed)) == ("overlap" if zoom == 2.0 else "none")


@pytest.mark.parametrize(("config", "second_look_peak", "reason"), [
    (VerificationConfig(min_detail_agreement=1.0), correlation.SECOND_LOOK_PEAK, Reason.DETAIL_DISAGREES),
    (VerificationConfig(min_correlation=1.0), correlation.SECOND_LOOK_PEAK, Reason.LOW_MEDIAN_CELL),
    (VerificationConfig(min_correlation=1.0), 1.0, Reason.LOW_CORRELATION),
])
def test_a_correlation_rejection_records_its_reason(
    config: VerificationConfig, second_look_peak: float, reason: Reason, scene: np.ndarray, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 2x zoom, accepted by default, rejected for the one threshold made too strict, with the best correlation
    measured."""
    original = features_of(tmp_path, "original", scene)
    zoomed = features_of(tmp_path, "zoomed", zoomed_in(scene, 90, 130, 2.0))
    assert correlate_pair(original, zoomed).accepted
    monkeypatch.setattr(correlation, "SECOND_LOOK_PEAK", second_look_peak)

    result = correlate_pair(original, zoomed, config)

    assert (result.accepted, result.stage, result.reason) == (False, Stage.CORRELATION, reason)
    assert result.correlation < 1.0 and math.isnan(result.inlier_ratio) and result.a_to_b is None


def test_a_placement_along_parallel_lines_is_not_distinct() -> None:
    """Two scenes with the same straight stripes and different texture correlate at any shift along the stripes:
    the search's best placement correlates well above `SEARCH_MIN_CORRELATION` but is rejected, as the
    placement 4 pixels along the stripes correlates as well."""
    rng = np.random.default_rng(5)
    stripes = np.repeat(rng.uniform(60, 200, (32, 1)), 4, axis=0) * np.ones((1, 128))
    first, second = (np.clip(stripes + rng.normal(0, 6, stripes.shape), 0, 255).astype(np.uint8) for _ in range(2))
    details = {id(view): fine_detail(view) for view in (first, second)}

    def detail(view: np.ndarray) -> np.ndarray:
        return details[id(view)]

    best = max(overlap_correlation(details[id(first)], details[id(second)], 0, dx, -1.0) for dx in range(-100, 101))
    assert best >= SEARCH_MIN_CORRELATION
    assert search_placements(first, second, detail, correlation.MIN_OVERLAP * THUMBNAIL_SIDE**2)[:2] == (-1.0, 0)


@pytest.mark.parametrize(("fixed_shape", "moving_shape"), [((12, 12), (12, 12)), ((9, 14), (13, 6))])
@pytest.mark.parametrize("seed", range(4))
def test_best_shift_is_the_best_normalised_product_of_every_shift(
    fixed_shape: tuple[int, int], moving_shape: tuple[int, int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    fixed, moving = (rng.standard_normal(shape).astype(np.float32) for shape in (fixed_shape, moving_shape))
    min_area = 20
    expected: dict[tuple[int, int], float] = {}
    for dy in range(1 - moving_shape[0], fixed_shape[0]):
        for dx in range(1 - moving_shape[1], fixed_shape[1]):
            region_fixed, region_moving = overlap(fixed, moving, dy, dx)
            if region_fixed.size >= min_area:
                expected[dy, dx] = float((region_fixed * region_moving).sum()) / math.sqrt(
                    float((region_fixed**2).sum()) * float((region_moving**2).sum()))

    found, dy, dx = best_shift(fixed, moving, min_area)

    assert found == pytest.approx(max(expected.values()), abs=1e-5)
    assert expected[dy, dx] == pytest.approx(found, abs=1e-5)


def test_best_shift_finds_none_without_a_positive_correlation() -> None:
    fixed = np.tile(np.float32([1.0, -1.0]), (8, 4))
    assert best_shift(fixed, -fixed, fixed.size) == (-1.0, 0, 0)


def test_a_watermark_stamped_on_a_copy_of_a_smooth_scene_does_not_hide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On smooth grass the watermark's text holds every strong corner and most of the fine detail of the copy, so
    no keypoints match and the whole overlap correlates weakly; away from the text it correlates as a copy does,
    and the median cell accepts it."""
    original = cv2.imread(str(rsscn7_tile("aGrass/a127.jpg")))
    first, copy = features_of(tmp_path, "original", original), features_of(
        tmp_path, "copy", with_overlay(original, "watermark"))

    result = correlate_pair(first, copy)
    monkeypatch.setattr(correlation, "SECOND_LOOK_PEAK", 1.0)  # the whole overlap only
    whole_overlap_only = correlate_pair(first, copy)

    assert relation(match_keypoints(first, copy, VerificationConfig())) == "none"
    assert (whole_overlap_only.accepted, whole_overlap_only.reason) == (False, Reason.LOW_CORRELATION)
    assert (relation(result), result.transform, result.evidence) == ("duplicate", "same", Check.MEDIAN_CELL)
    assert result.correlation >= VerificationConfig().min_correlation


def test_a_watermarked_copy_is_checked_cell_by_cell_when_a_half_of_its_overlap_fails(tmp_path: Path) -> None:
    """The text fills one half of the overlap more than the other: the whole overlap correlates at `MIN_HALF` but
    one half does not. The strong peak's placement must still be checked cell by cell (it was dropped, and 20 of
    100 RSSCN7 grass and field tiles under this watermark were missed)."""
    original = cv2.imread(str(rsscn7_tile("aGrass/a021.jpg")))
    first, copy = features_of(tmp_path, "original", original), features_of(
        tmp_path, "copy", with_overlay(original, "watermark"))

    assert relation(match_keypoints(first, copy, VerificationConfig())) == "none"
    detail = detail_of_each()
    assert overlap_correlation(detail(first.thumbnail), detail(copy.thumbnail), 0, 0) == -1.0
    result = correlate_pair(first, copy)
    assert (relation(result), result.transform) == ("duplicate", "same")


def test_stickers_placed_over_each_other_do_not_make_different_scenes_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two real field tiles, each with a yellow disc half its side across at another place (a sticker, a logo):
    placed disc on disc, the rim is most of their fine detail and passes through most cells, so they correlated as
    an overlap. Away from where both show the disc's one flat level, their detail does not agree."""
    def stickered(name: str, left: int, top: int) -> np.ndarray:
        image = Image.open(rsscn7_tile(name)).convert("RGB")
        ImageDraw.Draw(image).ellipse((left, top, left + SIZE // 2, top + SIZE // 2), fill=(250, 200, 30))
        return np.asarray(image)[:, :, ::-1].copy()

    first = features_of(tmp_path, "first", stickered("bField/b188.jpg", 20, 76))
    second = features_of(tmp_path, "second", stickered("bField/b158.jpg", 156, 73))
    assert relation(verify_pair(first, second)) == "none"

    def nothing_flat(gray: np.ndarray) -> np.ndarray:
        return np.zeros(gray.shape, bool)

    for stage in (thumbnails, agreement):  # the flat areas overlooked, in fill and in the agreement
        monkeypatch.setattr(stage, "flat", nothing_flat)
    assert relation(correlate_pair(first, second)) == "overlap"


def test_an_agreement_resting_on_a_few_cells_of_detail_is_none(tmp_path: Path) -> None:
    """Two black images (a night scene, a tile darkened to nothing) with detail in one small patch, the same in
    both: fill has no detail, so one cell of 36 would decide their agreement; fewer than half of the cells with
    detail in both say nothing (-1)."""
    patch = textured_scene(seed=7)[:50, :50]
    images = [np.zeros((SIZE, SIZE, 3), np.uint8) for _ in range(2)]
    for image in images:
        image[170:220, 170:220] = patch
    first, second = (features_of(tmp_path, f"black{index}", image) for index, image in enumerate(images))

    no_inliers = np.empty((0, 2), np.float32)
    assert detail_agreement(np.eye(3), no_inliers, first, second, PLACEMENT_GRID) == -1.0


def test_correlation_rejects_unrelated_rotated_and_tiny_images(scene: np.ndarray, tmp_path: Path) -> None:
    original = features_of(tmp_path, "original", scene)
    others = [features_of(tmp_path, f"other{seed}", textured_scene(seed)) for seed in range(2, 6)]
    rotated = features_of(tmp_path, "rotated", cv2.rotate(scene, cv2.ROTATE_90_CLOCKWISE))
    tiny = features_of(tmp_path, "tiny", scene[:24, :24])

    for other in [*others, rotated]:  # rotations are the keypoints' job
        result = correlate_pair(original, other)
        assert not result.accepted and result.stage == Stage.CORRELATION
        assert result.reason in {Reason.NO_CORRELATION_PEAK, Reason.LOW_CORRELATION, Reason.LOW_MEDIAN_CELL}
    assert correlate_pair(original, tiny).reason == Reason.TOO_SMALL
    # The same pair of unrelated scenes is accepted only when the correlation floor and the agreement of its cells
    # are dropped to nothing.
    floorless = VerificationConfig(min_correlation=0.01, min_detail_agreement=-1.0)
    assert relation(correlate_pair(original, others[0], floorless)) != "none"


def test_correlation_must_hold_in_both_halves_of_the_overlap() -> None:
    """A strong feature shared by one half of an overlap (a shoreline, a road) cannot carry a match alone."""
    rng = np.random.default_rng(5)
    fixed = rng.normal(0.0, 1.0, (60, 20)).astype(np.float32)
    moving = fixed.copy()
    assert overlap_correlation(fixed, moving, 0, 0, min_half=0.5) == pytest.approx(1.0)
    moving[30:] = rng.normal(0.0, 1.0, (30, 20))  # the lower half is different ground
    fixed[:30] *= 4.0
    moving[:30] *= 4.0  # ... and the shared upper half holds most of the detail
    assert normalised_correlation(fixed, moving) > 0.9
    assert overlap_correlation(fixed, moving, 0, 0, min_half=0.5) == -1.0
    assert overlap_correlation(fixed, moving, 0, 0, min_half=-1.0) > 0.9


def test_packed_cross_power_inverts_to_the_phase_correlation_surface() -> None:
    """OpenCV's inverse of the packed spectrum is the inverse real transform of the whitened cross-power spectrum
    (numpy's, as the reference), and peaks at the shift between two views."""
    rng = np.random.default_rng(2)
    view = rng.integers(0, 256, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), np.uint8)
    shifted = np.roll(view, (5, -9), axis=(0, 1))
    fixed_phases, moving_phases = (spectrum_phases(fine_detail(image)) for image in (view, shifted))
    difference = 2 * np.pi * (fixed_phases.astype(np.float64) - moving_phases) / PHASE_LEVELS
    expected = np.fft.irfft2(np.exp(1j * difference), s=view.shape)

    surface = cv2.idft(packed_cross_power(fixed_phases, moving_phases, COSINES, SINES),
                       flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)

    np.testing.assert_allclose(surface, expected, atol=1e-6)
    assert np.unravel_index(surface.argmax(), surface.shape) == (THUMBNAIL_SIDE - 5, 9)
