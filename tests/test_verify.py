"""Tests of the verification cascade and runner (`tasks.verify`) on generated images, and on RSSCN7 scenes when the
shared copy is present. The stages have their own files: tests/test_verify_<stage>.py."""

import itertools
import math
import pickle
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydantic
import pytest
from PIL import Image, ImageDraw, ImageFont

from tasks.config import DecisionsConfig, VerificationConfig
from tasks.relations import relation_of
from tasks.schema import Check, Col, MatchCol
from tasks.verify import (
    FINE, RESULT_COLUMNS, WORKING, ImageFeatures, Reason, Stage, Verification, chunks_by_locality, correlate_pair,
    extract_features, verify_pair, verify_pairs,
)
from tasks.verify import cascade, correlation, features, runner
from tasks.verify.keypoints import match_keypoints
from tests.conftest import RSSCN7, SIZE, save, textured_scene



DUPLICATE_SHARE = DecisionsConfig().duplicate_share


def relation(result: Verification) -> str:
    """The relation an accepted pair gets at the default duplicate share; "none" when rejected."""
    return relation_of(np.array([result.share_a]), np.array([result.share_b]), DUPLICATE_SHARE)[0] if (
        result.accepted) else "none"


def frame_relations(frame: pd.DataFrame) -> list[str]:
    """`relation` of each row of a frame `verify_pairs` returned."""
    related = relation_of(frame[MatchCol.SHARE_A].to_numpy(), frame[MatchCol.SHARE_B].to_numpy(), DUPLICATE_SHARE)
    return np.where(frame[MatchCol.EVIDENCE] != "", related, "none").tolist()


def check(path_a: Path, path_b: Path) -> Verification:
    features_a, features_b = extract_features(path_a), extract_features(path_b)
    assert features_a is not None and features_b is not None
    return verify_pair(features_a, features_b)


def features_of(tmp_path: Path, name: str, image: np.ndarray) -> ImageFeatures:
    extracted = extract_features(save(tmp_path / f"{name}.jpg", image))
    assert extracted is not None
    return extracted


def rsscn7_tile(name: str) -> Path:
    path = RSSCN7 / name
    if not path.exists():
        pytest.skip(f"RSSCN7 development data not present at {RSSCN7}")
    return path


def zoomed_in(image: np.ndarray, top: int, left: int, zoom: float) -> np.ndarray:
    """The window of `image` at (top, left) that, enlarged `zoom` times, fills an image of the same size."""
    side = round(image.shape[0] / zoom)
    return cv2.resize(image[top : top + side, left : left + side], image.shape[1::-1], interpolation=cv2.INTER_CUBIC)


def with_overlay(image: np.ndarray, kind: str) -> np.ndarray:
    """`image` (BGR) under an overlay that a dataset's provider puts at the same place on every image."""
    overlaid = Image.fromarray(image[:, :, ::-1])
    draw = ImageDraw.Draw(overlaid, "RGBA")
    width, height = overlaid.size
    if kind == "info_band":
        draw.rectangle((0, height - 30, width, height), fill=(0, 0, 0, 255))
        draw.text((8, height - 27), "Provider X  |  Scene 2026-04-11  |  Res 0.5 m", font=ImageFont.load_default(22),
                  fill=(255, 255, 255, 255))
    else:
        draw.text((width // 2 - 120, height // 2 - 12), "SAMPLE  SAMPLE", font=ImageFont.load_default(36),
                  fill=(255, 255, 255, 120))
    return np.asarray(overlaid)[:, :, ::-1].copy()


def half_size(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (SIZE // 2, SIZE // 2), interpolation=cv2.INTER_AREA)


def crop(image: np.ndarray, share: float, top: int, left: int) -> np.ndarray:
    side = int(SIZE * share)
    return image[top : top + side, left : left + side]


def brighter(image: np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float32) * 1.3, 0, 255).astype(np.uint8)


def flatter(image: np.ndarray) -> np.ndarray:
    return np.clip((image.astype(np.float32) - 128) * 0.7 + 140, 0, 255).astype(np.uint8)


TRANSFORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], int, str]] = {
    # name: (edit applied to the original, JPEG quality of the copy, expected transform label)
    "recompressed": (lambda image: image, 30, "same"),
    "half_size": (half_size, 90, "rescale"),
    "crop75": (lambda image: crop(image, 0.75, 40, 60), 90, "crop"),
    "crop65_resized_back": (
        lambda image: cv2.resize(crop(image, 0.65, 100, 30), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR),
        90,
        "rescale+crop",
    ),
    "hflip": (lambda image: cv2.flip(image, 1), 90, "hflip"),
    "vflip": (lambda image: cv2.flip(image, 0), 90, "vflip"),
    "rotate90": (lambda image: cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE), 90, "rotate90"),
    "rotate180": (lambda image: cv2.rotate(image, cv2.ROTATE_180), 90, "rotate180"),
    "rotate270": (lambda image: cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE), 90, "rotate270"),
    "brighter": (brighter, 90, "same"),
    "lower_contrast": (flatter, 90, "same"),
    "half_size_rotate90": (lambda image: cv2.rotate(half_size(image), cv2.ROTATE_90_CLOCKWISE), 60, "rotate90+rescale"),
    "crop80_hflip": (lambda image: cv2.flip(crop(image, 0.8, 0, 80), 1), 90, "hflip+crop"),
    "hflip_rotate90": (lambda image: cv2.rotate(cv2.flip(image, 1), cv2.ROTATE_90_CLOCKWISE), 90, "hflip+rotate90"),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_edited_copy_is_duplicate_with_its_transform(
    name: str, scene: np.ndarray, scene_path: Path, tmp_path: Path
) -> None:
    edit, quality, expected_transform = TRANSFORMS[name]
    copy_path = save(tmp_path / f"{name}.jpg", edit(scene), quality)

    result = check(scene_path, copy_path)

    # A crop lies within the original but shows less than the default duplicate share of it: an overlap.
    assert relation(result) == ("overlap" if "crop" in expected_transform else "duplicate")
    assert result.transform == expected_transform
    assert (result.stage, result.evidence, result.reason) == (Stage.KEYPOINTS, Check.KEYPOINTS, "")
    assert result.inliers >= VerificationConfig().min_inliers
    assert 0.0 < result.inlier_ratio <= 1.0 and math.isnan(result.correlation)
    assert result.share_b >= 0.9


def test_mirror_copy_matches_as_strongly_as_a_rotated_copy(
    scene: np.ndarray, scene_path: Path, tmp_path: Path
) -> None:
    """Mirror descriptors must be true mirrors (position and orientation), not a weak partial match.

    Only the strongest `mirror_features` keypoints are mirrored, so the bar is set against that budget."""
    mirrored = check(scene_path, save(tmp_path / "hflip.jpg", cv2.flip(scene, 1)))
    rotated = check(scene_path, save(tmp_path / "rotate180.jpg", cv2.rotate(scene, cv2.ROTATE_180)))

    assert mirrored.inliers >= 0.5 * min(rotated.inliers, WORKING.mirror_features)


def test_shares_do_not_depend_on_pair_order(scene: np.ndarray, scene_path: Path, tmp_path: Path) -> None:
    """A crop of 70 % of the side lies within the original and shows 49 % of it, whichever image comes first."""
    copy_path = save(tmp_path / "crop.jpg", crop(scene, 0.7, 50, 50))

    forward, backward = check(scene_path, copy_path), check(copy_path, scene_path)
    assert forward.transform == backward.transform == "crop"
    assert (forward.share_a, forward.share_b) == pytest.approx((0.49, 1.0), abs=0.03)
    assert (backward.share_a, backward.share_b) == pytest.approx((1.0, 0.49), abs=0.03)
    assert relation(forward) == relation(backward) == "overlap"


@pytest.mark.parametrize(("offset", "expected_share"), [((100, 0), 2 / 3), ((80, 80), (220 / 300) ** 2)])
def test_shifted_windows_of_one_scene_overlap(
    offset: tuple[int, int], expected_share: float, scene: np.ndarray, tmp_path: Path
) -> None:
    dx, dy = offset
    path_a = save(tmp_path / "a.jpg", scene[0:300, 0:300])
    path_b = save(tmp_path / "b.jpg", scene[dy : dy + 300, dx : dx + 300])

    result = check(path_a, path_b)

    assert relation(result) == "overlap"
    assert result.transform == "shift"
    assert (result.share_a, result.share_b) == pytest.approx((expected_share, expected_share), abs=0.05)


def test_different_scenes_of_the_same_texture_do_not_match(tmp_path: Path) -> None:
    """Every rejection names the stage that decided and a reason from the enumeration."""
    paths = [save(tmp_path / f"scene{seed}.jpg", textured_scene(seed)) for seed in range(2, 6)]
    extracted = [extract_features(path) for path in paths]

    for index, features_a in enumerate(extracted):
        for features_b in extracted[index + 1 :]:
            assert features_a is not None and features_b is not None
            result = verify_pair(features_a, features_b)
            assert relation(result) == "none" and result.transform == "" and result.a_to_b is None
            assert result.stage in {Stage.CORRELATION, Stage.FINE_KEYPOINTS} and result.reason in set(Reason)


def test_thin_shared_strip_is_an_overlap_found_by_correlation(
    scene: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two 300 px windows sharing a 45 x 260 px strip (13 %), mostly inside ORB's border margin."""
    wide = textured_scene(seed=1, size=600)
    a, b = features_of(tmp_path, "a", wide[0:300, 0:300]), features_of(tmp_path, "b", wide[40:340, 255:555])

    result = verify_pair(a, b)

    assert (relation(result), result.transform, result.inliers) == ("overlap", "shift", 0)
    assert result.stage == Stage.CORRELATION and math.isnan(result.inlier_ratio)
    assert result.correlation >= VerificationConfig().min_correlation
    assert (result.share_a, result.share_b) == pytest.approx((45 * 260 / 300**2,) * 2, abs=0.04)
    # The overlap must be large enough: a minimum above its share rejects it.
    monkeypatch.setattr(correlation, "MIN_OVERLAP", 0.3)
    rejected = correlate_pair(a, b)
    assert relation(rejected) == "none" and rejected.stage == Stage.CORRELATION and rejected.reason


def test_a_ten_percent_strip_is_found_by_the_placement_search() -> None:
    """RSSCN7's c199 and c200 were cut from one image and share a strip of 10 % (14 rows of the 128-pixel
    thumbnail, 8 pixels aside): phase correlation of the whole thumbnails peaks elsewhere (at 0.034), and the
    search over every shift finds it."""
    c199, c200 = (extract_features(rsscn7_tile(name)) for name in ("cIndustry/c199.jpg", "cIndustry/c200.jpg"))

    result = verify_pair(c199, c200)

    assert (relation(result), result.transform, result.inliers) == ("overlap", "shift", 0)
    assert result.evidence == Check.SHIFT_SEARCH
    assert (result.share_a, result.share_b) == pytest.approx((14 * 120 / 128**2,) * 2, abs=0.01)
    assert result.correlation >= VerificationConfig().min_correlation


@pytest.mark.parametrize("names", [("cIndustry/c051.jpg", "cIndustry/c050.jpg"), ("aGrass/a053.jpg", "aGrass/a054.jpg")])
def test_parallel_lines_do_not_place_different_scenes(names: tuple[str, str]) -> None:
    """Rows of barns, and furrows beside a road: the best shift of these different scenes correlates at 0.72 and
    0.73 (below `SEARCH_MIN_CORRELATION`), and as well 4 pixels further along the lines."""
    first, second = (extract_features(rsscn7_tile(name)) for name in names)

    assert relation(verify_pair(first, second)) == "none"


@pytest.mark.parametrize("name", ["cIndustry/c010.jpg", "eForest/e020.jpg", "gParking/g030.jpg"])
def test_a_crop_of_a_small_tile_matches_it(name: str, tmp_path: Path) -> None:
    """A 64-pixel tile and its central half (45 pixels a side): ORB finds almost no corners at that size, so
    keypoints are found on images enlarged to `MIN_KEYPOINT_SIDE` (those at least 32 pixels wide)."""
    tile = cv2.resize(cv2.imread(str(rsscn7_tile(name))), (64, 64), interpolation=cv2.INTER_AREA)
    whole, half = features_of(tmp_path, "whole", tile), features_of(tmp_path, "half", tile[10:55, 9:54])

    result = verify_pair(whole, half)

    assert (result.accepted, result.transform) == (True, "crop")
    assert (result.share_a, result.share_b) == pytest.approx(((45 / 64) ** 2, 1.0), abs=0.05)
    assert whole.width == 128 and half.width == 128  # both enlarged for their keypoints


def test_no_finer_pass_for_two_enlarged_images(tmp_path: Path) -> None:
    """Two images enlarged for their keypoints would show the finer pass only more corners on the same
    interpolated pixels; a pair with one image that has more pixels to show still gets it."""
    large = [features_of(tmp_path, f"large{seed}", textured_scene(seed)) for seed in (1, 2)]  # 400 px, shrunk
    small = [features_of(tmp_path, f"small{seed}", textured_scene(seed, size=64)) for seed in (1, 2)]
    doubtful = Verification(stage=Stage.KEYPOINTS, reason=Reason.TOO_FEW_INLIERS, inliers=cascade.REFINE_MIN_INLIERS)
    hopeless = Verification(stage=Stage.KEYPOINTS, reason=Reason.TOO_FEW_INLIERS, inliers=0)

    assert cascade.worth_refining(doubtful, 0.0, large[0], large[1])
    assert cascade.worth_refining(hopeless, correlation.SECOND_LOOK_PEAK, large[0], large[1])
    assert cascade.worth_refining(doubtful, 0.0, large[0], small[1])
    assert not cascade.worth_refining(hopeless, 0.0, large[0], large[1])
    assert small[0].enlarged and not large[0].enlarged
    assert not cascade.worth_refining(doubtful, 1.0, small[0], small[1])


def test_black_fill_does_not_make_different_scenes_correlate(tmp_path: Path) -> None:
    """Three smooth field and grass tiles, each turned by 45 degrees: the turned copies share only the black
    corners the turn leaves, whose straight borders are most of their fine detail (without ignoring fill, 3 of
    these 3 pairs correlated at 0.76 to 0.85). Each still matches its own original."""
    def turned(image: np.ndarray) -> np.ndarray:
        centre = (image.shape[1] / 2, image.shape[0] / 2)
        return cv2.warpAffine(image, cv2.getRotationMatrix2D(centre, 45, 1.0), image.shape[1::-1])

    names = ("aGrass/a109.jpg", "bField/b187.jpg", "bField/b037.jpg")
    originals = [cv2.imread(str(rsscn7_tile(name))) for name in names]
    copies = [features_of(tmp_path, f"turned{index}", turned(image)) for index, image in enumerate(originals)]

    for first, second in itertools.combinations(copies, 2):
        assert relation(correlate_pair(first, second)) == "none"
        assert relation(verify_pair(first, second)) == "none"
    for index, (original, copy) in enumerate(zip(originals, copies, strict=True)):
        assert relation(verify_pair(features_of(tmp_path, f"original{index}", original), copy)) != "none"


OVERLAID_SCENES = ("aGrass/a109.jpg", "bField/b187.jpg", "bField/b037.jpg", "dRiverLake/d058.jpg", "eForest/e130.jpg")


@pytest.mark.parametrize("kind", ["info_band", "watermark"])
def test_an_overlay_shared_by_different_scenes_does_not_make_them_copies(kind: str, tmp_path: Path) -> None:
    """Five real scenes under one info band, or one translucent watermark: their keypoints match on it alone and
    fit like an untouched copy, and on the smooth ones it is most of the fine detail that correlates; away from it
    their detail does not agree (`min_detail_agreement`). A mirrored copy of one, overlay and all, still matches."""
    scenes = [cv2.imread(str(rsscn7_tile(name))) for name in OVERLAID_SCENES]
    paths = [str(save(tmp_path / f"{kind}{index}.jpg", with_overlay(image, kind)))
             for index, image in enumerate(scenes)]
    pairs = pd.DataFrame(list(itertools.combinations(paths, 2)), columns=["path_a", "path_b"])

    assert set(frame_relations(verify_pairs(pairs, VerificationConfig()))) == {"none"}
    assert set(frame_relations(verify_pairs(pairs, VerificationConfig(min_detail_agreement=-1.0)))) == {"duplicate"}
    copy = features_of(tmp_path, "copy", cv2.flip(with_overlay(scenes[3], kind), 1))
    assert relation(verify_pair(features_of(tmp_path, "original", with_overlay(scenes[3], kind)), copy)) == "duplicate"


# The two RSSCN7 tiles with the fewest ORB corners at the default FAST threshold: smooth grass.
SMOOTH_GRASS = ("aGrass/a131.jpg", "aGrass/a153.jpg")
# A natural 2x zoom among the RSSCN7 tiles (bench/rsscn7_overlaps.csv): b shows a quarter of a's ground.
ZOOM_PAIR = ("aGrass/a184.jpg", "aGrass/a029.jpg")


def test_smooth_real_scene_copy_verifies(tmp_path: Path) -> None:
    """A smooth grass field gives almost no corners at first: its rotated, recompressed copy must still verify."""
    original = rsscn7_tile(SMOOTH_GRASS[0])
    copy_path = save(tmp_path / "grass.jpg", cv2.rotate(cv2.imread(str(original)), cv2.ROTATE_90_COUNTERCLOCKWISE), 40)

    result = check(original, copy_path)

    assert (relation(result), result.transform) == ("duplicate", "rotate270")


def test_distinct_real_grass_fields_do_not_match() -> None:
    assert relation(check(rsscn7_tile(SMOOTH_GRASS[0]), rsscn7_tile(SMOOTH_GRASS[1]))) == "none"


def test_real_zoomed_tile_is_found_by_correlation() -> None:
    """RSSCN7 tile a029 is a 2x zoom into part of a184: too few keypoints match, the correlation finds it."""
    features_out, features_in = extract_features(rsscn7_tile(ZOOM_PAIR[0])), extract_features(rsscn7_tile(ZOOM_PAIR[1]))
    assert features_out is not None and features_in is not None

    result = verify_pair(features_out, features_in)

    assert relation(match_keypoints(features_out, features_in, VerificationConfig())) == "none"
    assert relation(result) != "none" and result.stage == Stage.CORRELATION
    assert result.transform.split("+")[0] == "zoom2x"  # part of a029 lies outside a184: an overlap, shifted
    assert result.correlation >= VerificationConfig().min_correlation
    assert correlate_pair(features_in, features_out).transform.split("+")[0] == "zoom0.5x"


def test_unreadable_file_has_no_features(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")

    assert extract_features(broken) is None
    assert extract_features(tmp_path / "missing.jpg") is None


def test_image_too_small_for_keypoints_matches_nothing(scene: np.ndarray, scene_path: Path, tmp_path: Path) -> None:
    """The keypoints find none, the correlation cannot run, and the finer pass is not worth it: the rejection is
    the correlation's, as the last stage that decided."""
    tiny = extract_features(save(tmp_path / "tiny.jpg", scene[:24, :24]))
    original = extract_features(scene_path)
    assert tiny is not None and original is not None

    assert len(tiny.points) == 0
    for result in (verify_pair(tiny, original), verify_pair(original, tiny)):
        assert not result.accepted
        assert (result.stage, result.reason) == (Stage.CORRELATION, Reason.TOO_SMALL)


@pytest.mark.parametrize("size", [(1, 1), (3, 60), (60, 2)])
def test_degenerate_image_has_no_features_and_matches_nothing(
    size: tuple[int, int], scene: np.ndarray, scene_path: Path, tmp_path: Path
) -> None:
    """A 1-pixel image or a thin strip must not crash OpenCV's keypoint pyramid; it simply matches nothing."""
    degenerate = extract_features(save(tmp_path / "degenerate.png", scene[: size[0], : size[1]]))
    original = extract_features(scene_path)
    assert degenerate is not None and original is not None

    assert len(degenerate.points) == len(degenerate.mirror_points) == 0 and degenerate.thumbnail.size == 0
    for result in (verify_pair(degenerate, original), verify_pair(original, degenerate)):
        assert (result.accepted, result.reason) == (False, Reason.TOO_SMALL)


def test_features_are_plain_arrays_that_survive_pickling(scene_path: Path) -> None:
    extracted = extract_features(scene_path)
    assert extracted is not None

    restored = pickle.loads(pickle.dumps(extracted))

    assert isinstance(restored, ImageFeatures)
    assert restored.descriptors.shape == (len(restored.points), 32)
    assert restored.mirror_descriptors.shape == (len(restored.mirror_points), 32)
    assert restored.thumbnail.shape == (128, 128) and restored.thumbnail.dtype == np.uint8
    assert len(restored.points) >= WORKING.n_features // 2
    assert verify_pair(restored, extracted).transform == "same"


def test_verify_pairs_adds_columns_and_extracts_each_image_once(
    scene: np.ndarray, scene_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotated = save(tmp_path / "rotated.jpg", cv2.rotate(scene, cv2.ROTATE_180))
    other = save(tmp_path / "other.jpg", textured_scene(seed=9))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    pairs = pd.DataFrame(
        {
            "path_a": [str(scene_path), str(scene_path), str(rotated), str(broken)],
            "path_b": [str(rotated), str(other), str(other), str(scene_path)],
            "pair_id": [1, 2, 3, 4],
        }
    )
    extracted: list[str] = []
    real_extract = runner.extract_features

    def counting_extract(path: str, resolution: features.Resolution) -> ImageFeatures | None:
        if resolution == WORKING:  # the finer second pass is counted separately
            extracted.append(str(path))
        return real_extract(path, resolution)

    monkeypatch.setattr(runner, "extract_features", counting_extract)
    runner.FEATURE_CACHE.limit(0)  # nothing from earlier tests

    result = verify_pairs(pairs)

    assert sorted(extracted) == sorted({str(scene_path), str(rotated), str(other), str(broken)})
    assert list(result["pair_id"]) == [1, 2, 3, 4]
    assert frame_relations(result) == ["duplicate", "none", "none", "none"]
    assert list(result[MatchCol.TRANSFORM]) == ["rotate180", "", "", ""]
    assert result.loc[0, MatchCol.INLIERS] >= VerificationConfig().min_inliers
    assert (result.loc[0, MatchCol.STAGE], result.loc[0, MatchCol.REASON]) == ("keypoints", "")
    assert (result.loc[3, MatchCol.STAGE], result.loc[3, MatchCol.REASON]) == ("features", "unreadable")
    assert (result.loc[1:2, MatchCol.REASON] != "").all()
    assert list(result.columns) == [*pairs.columns, *RESULT_COLUMNS]
    assert MatchCol.EVIDENCE not in pairs.columns


@pytest.mark.parametrize(("min_inliers", "min_peak", "refined"), [(0, 1.0, True), (1000, 0.0, True), (1000, 1.0, False)])
def test_only_rejected_pairs_with_enough_inliers_or_a_peak_are_matched_again_finer(
    min_inliers: int, min_peak: float, refined: bool, scene: np.ndarray, scene_path: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rotated = save(tmp_path / "rotated.jpg", cv2.rotate(scene, cv2.ROTATE_180))
    other = save(tmp_path / "other.jpg", textured_scene(seed=9))
    pairs = pd.DataFrame({"path_a": [str(scene_path), str(scene_path)], "path_b": [str(rotated), str(other)]})
    monkeypatch.setattr(cascade, "REFINE_MIN_INLIERS", min_inliers)
    monkeypatch.setattr(cascade, "SECOND_LOOK_PEAK", min_peak)
    finer: list[str] = []
    real_extract = runner.extract_features

    def counting_extract(path: str, resolution: features.Resolution) -> ImageFeatures | None:
        if resolution == FINE:
            finer.append(str(path))
        return real_extract(path, resolution)

    monkeypatch.setattr(runner, "extract_features", counting_extract)
    runner.FEATURE_CACHE.limit(0)  # nothing from earlier tests

    result = verify_pairs(pairs)

    # The copy is settled at the working size; only the rejected pair can reach the finer pass, whose rejection
    # is then the one recorded.
    assert sorted(finer) == (sorted([str(scene_path), str(other)]) if refined else [])
    assert frame_relations(result) == ["duplicate", "none"]
    assert result.loc[1, MatchCol.STAGE] == (Stage.FINE_KEYPOINTS if refined else Stage.CORRELATION)


def test_real_furrowed_overlap_is_found_by_the_finer_pass_its_correlation_peak_calls_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RSSCN7 tiles b125 and b126 share 35 % of a furrowed field: two keypoints match at the working size and
    the fine furrows correlate at 0.39 in the thumbnails, but the correlation surface peaks clearly, so the pair
    gets the finer keypoint pass, which finds the shift."""
    pairs = pd.DataFrame(
        {"path_a": [str(rsscn7_tile("bField/b125.jpg"))], "path_b": [str(rsscn7_tile("bField/b126.jpg"))]}
    )

    found = verify_pairs(pairs)
    monkeypatch.setattr(cascade, "SECOND_LOOK_PEAK", 1.0)
    monkeypatch.setattr(correlation, "SECOND_LOOK_PEAK", 1.0)
    without_peak_trigger = verify_pairs(pairs)

    assert frame_relations(found) == ["overlap"]
    assert found.loc[0, MatchCol.EVIDENCE] == Check.FINE_KEYPOINTS
    assert found.loc[0, MatchCol.INLIERS] >= VerificationConfig().min_inliers
    assert frame_relations(without_peak_trigger) == ["none"]


def test_real_cropped_turned_mirrored_copy_is_found_by_the_finer_pass_mirrored_keypoints(tmp_path: Path) -> None:
    """A 36 % crop of RSSCN7 tile e151, turned and mirrored: the working size rejects it with a few mirrored
    inliers, and the finer pass finds it only if it describes as large a share of its keypoints mirrored."""
    original = rsscn7_tile("eForest/e151.jpg")
    with Image.open(original) as image:
        copy = image.convert("RGB").crop((40, 120, 280, 360)).transpose(Image.Transpose.ROTATE_90)
        copy.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "copy.jpg", quality=90)
    pairs = pd.DataFrame({"path_a": [str(original)], "path_b": [str(tmp_path / "copy.jpg")]})
    working = [extract_features(path) for path in pairs.iloc[0]]

    found = verify_pairs(pairs)

    assert relation(match_keypoints(*working, VerificationConfig())) == "none"  # type: ignore[arg-type]
    assert relation(correlate_pair(*working)) == "none"  # type: ignore[arg-type]
    assert FINE.mirror_features / FINE.n_features == WORKING.mirror_features / WORKING.n_features
    assert found.loc[0, MatchCol.EVIDENCE] == Check.FINE_KEYPOINTS
    assert (frame_relations(found)[0], found.loc[0, MatchCol.TRANSFORM]) == ("overlap", "hflip+rotate90+crop")
    assert (found.loc[0, MatchCol.SHARE_A], found.loc[0, MatchCol.SHARE_B]) == pytest.approx((0.36, 1.0), abs=0.04)


def test_real_heavy_crop_is_found_by_the_finer_pass_matching_from_the_crop(tmp_path: Path) -> None:
    """A quarter of RSSCN7 tile c109, mirrored and turned by 25 degrees: from the original most keypoints lie
    outside the crop and the finer pass's match fails; from the crop to the original it holds."""
    original = rsscn7_tile("cIndustry/c109.jpg")
    with Image.open(original) as image:
        copy = image.convert("RGB").crop((177, 55, 377, 255)).rotate(-25, resample=Image.Resampling.BICUBIC)
        copy.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "copy.jpg", quality=85)
    pairs = pd.DataFrame({"path_a": [str(original)], "path_b": [str(tmp_path / "copy.jpg")]})
    fine_original, fine_copy = (extract_features(path, FINE) for path in pairs.iloc[0])
    assert fine_original is not None and fine_copy is not None

    found = verify_pairs(pairs)

    assert relation(match_keypoints(fine_original, fine_copy, VerificationConfig(), Stage.FINE_KEYPOINTS)) == "none"
    assert (frame_relations(found)[0], found.loc[0, MatchCol.TRANSFORM]) == ("overlap", "hflip+rotate+crop")
    assert found.loc[0, MatchCol.SHARE_A] == pytest.approx(0.25, abs=0.04) and found.loc[0, MatchCol.SHARE_B] >= 0.9


def test_verify_pairs_accepts_an_empty_frame() -> None:
    result = verify_pairs(pd.DataFrame({"path_a": [], "path_b": []}))

    assert result.empty
    assert set(RESULT_COLUMNS) <= set(result.columns)


def test_verify_pairs_keeps_row_order_across_batches(scene: np.ndarray, scene_path: Path, tmp_path: Path) -> None:
    """Rows are verified in batches; each row keeps its own verdict, as `verify_pair` gives it."""
    paths = [str(scene_path), str(save(tmp_path / "rotated.jpg", cv2.rotate(scene, cv2.ROTATE_180))),
             str(save(tmp_path / "zoomed.jpg", zoomed_in(scene, 60, 80, 2.0))),
             str(save(tmp_path / "other.jpg", textured_scene(seed=9)))]
    rng = np.random.default_rng(3)
    rows = [tuple(rng.choice(paths, 2, replace=False)) for _ in range(3 * runner.PAIRS_PER_BATCH + 5)]
    pairs = pd.DataFrame(rows, columns=["path_a", "path_b"])
    working = {path: extract_features(path) for path in paths}

    result = verify_pairs(pairs)

    expected = [verify_pair(working[a], working[b]) for a, b in rows]  # type: ignore[arg-type]
    assert frame_relations(result) == [relation(verdict) for verdict in expected]
    assert list(result[MatchCol.TRANSFORM]) == [verdict.transform for verdict in expected]
    assert list(result[MatchCol.REASON]) == [verdict.reason for verdict in expected]
    assert {"rotate180", "zoom2x", "zoom0.5x"} <= set(result[MatchCol.TRANSFORM])


def test_correlation_spectra_are_taken_once_per_image(
    scene: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pair of 6 unrelated images is correlated (the keypoints reject them all), yet each image's views are
    transformed once, when its features are extracted: 6 images x (1 + 1 zoom) spectra, not 2 per pair."""
    paths = [str(save(tmp_path / f"scene{seed}.jpg", textured_scene(seed))) for seed in range(6)]
    pairs = pd.DataFrame(list(itertools.combinations(paths, 2)), columns=["path_a", "path_b"])
    transformed, real_phases = [], features.spectrum_phases
    monkeypatch.setattr(features, "spectrum_phases", lambda detail: transformed.append(detail.shape) or
                        real_phases(detail))
    monkeypatch.setattr(cascade, "worth_refining", lambda *pair: False)  # no finer pass: its own spectra
    runner.FEATURE_CACHE.limit(0)  # nothing from earlier tests

    result = verify_pairs(pairs)

    assert (result[MatchCol.EVIDENCE] == "").all()
    assert features.CORRELATION_ZOOMS == (2.0,)
    assert len(pairs) == 15 and len(transformed) == 6 * 2


def test_correlation_needs_features_made_for_its_zooms(
    scene: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_for_2x = features_of(tmp_path, "scene", scene)
    monkeypatch.setattr(features, "CORRELATION_ZOOMS", (1.5, 2.0))
    made_for_both = features_of(tmp_path, "scene", scene)
    assert made_for_2x.phases.shape == (2, 128, 65) and made_for_both.phases.shape == (3, 128, 65)
    with pytest.raises(ValueError, match=r"correlation zooms \(2.0,\), not \(1.5, 2.0\)"):
        correlate_pair(made_for_both, made_for_2x)


def test_chunks_by_locality_keep_partners_together() -> None:
    """A chain of 1,000 images whose rows are shuffled: chunks of 100 pairs in row order would each need images
    from all over the dataset; chunks by locality need 101, and every pair is in exactly one."""
    ends = [MatchCol.ROW_A, MatchCol.ROW_B]
    rows = np.random.default_rng(3).permutation(1000)
    chain = pd.DataFrame({MatchCol.ROW_A: np.minimum(rows[:-1], rows[1:]),
                          MatchCol.ROW_B: np.maximum(rows[:-1], rows[1:])})
    chunks = chunks_by_locality(chain, 100)
    together = pd.concat(chunks).sort_values(ends).reset_index(drop=True)
    pd.testing.assert_frame_equal(together, chain.sort_values(ends).reset_index(drop=True))
    assert len(chunks) == 10
    assert max(len(set(chunk[MatchCol.ROW_A]) | set(chunk[MatchCol.ROW_B])) for chunk in chunks) <= 101
    assert chunks_by_locality(chain.iloc[0:0], 100) == []


def test_settings_are_frozen_bounded_and_closed() -> None:
    settings = VerificationConfig()
    with pytest.raises(pydantic.ValidationError):
        settings.min_inliers = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        VerificationConfig(min_inliers=0)
    with pytest.raises(pydantic.ValidationError):
        VerificationConfig(min_inlier=10)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        VerificationConfig(correlation_zooms=(2.0,))  # type: ignore[call-arg]  # a constant of its stage now


def test_verdict_settings_leave_out_the_candidate_keys_only() -> None:
    default = VerificationConfig().verdict_settings()
    for name, field in VerificationConfig.model_fields.items():
        changed = VerificationConfig(**{name: field.default + 1 if isinstance(field.default, int) else 0.5})
        assert (changed.verdict_settings() == default) == name.startswith("candidate"), name


def test_changing_a_candidate_setting_reverifies_nothing_verified_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verification cache is keyed by the settings that change a verdict: a run with more candidates verifies
    only the pairs it adds; a change of a verdict setting verifies every pair again."""
    from tasks.ingest import find_files, ingest
    from tasks.similarity import empty_pairs

    data = tmp_path / "data"
    data.mkdir()
    for seed in range(8):
        save(data / f"{seed}.jpg", textured_scene(seed, size=160))
    save(data / "0_turned.jpg", cv2.rotate(textured_scene(0, size=160), cv2.ROTATE_90_CLOCKWISE))
    files = ingest(find_files({"train": data}, (".jpg",)))
    verified: list[set[tuple[int, int]]] = []
    real = runner.verify_pairs

    def counting(pairs: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
        verified.append(set(zip(pairs[MatchCol.ROW_A], pairs[MatchCol.ROW_B])))
        return real(pairs, *args, **kwargs)

    monkeypatch.setattr(runner, "verify_pairs", counting)

    def run(config: VerificationConfig) -> pd.DataFrame:
        verified.clear()
        return runner.verify_candidates(files, empty_pairs(), config, cache_dir=tmp_path / "cache")

    few = VerificationConfig(candidates_per_image=1, candidates_by_part=0, candidates_by_name=0)
    more = few.model_copy(update={"candidates_per_image": 3, "candidates_by_part": 2})
    first = run(few)
    first_verified = set().union(*verified)
    second = run(more)
    candidates = runner.select_candidates(files, empty_pairs(), more)

    all_candidates = set(zip(candidates[MatchCol.ROW_A], candidates[MatchCol.ROW_B]))
    assert first_verified and all_candidates > first_verified
    assert set().union(*verified) == all_candidates - first_verified
    assert len(second) >= len(first) >= 1  # the turned copy
    run(more.model_copy(update={"min_inliers": 9}))
    assert set().union(*verified) == all_candidates


def test_verify_candidates_keeps_stage_and_scores_of_accepted_pairs(tmp_path: Path) -> None:
    """A rotated copy is proposed by its colours and accepted by keypoints: its row says so, with an inlier ratio
    and no correlation."""
    from tasks.ingest import find_files, ingest
    from tasks.similarity import empty_pairs
    from tasks.verify import verify_candidates

    rng = np.random.default_rng(7)
    for index in range(6):
        colours = rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)
        Image.fromarray(colours).resize((120, 120), Image.NEAREST).save(tmp_path / f"{index}.png")
    Image.open(tmp_path / "0.png").rotate(90).save(tmp_path / "0_rotated.png")
    files = ingest(find_files({"train": tmp_path}, (".png",)))
    matches = verify_candidates(files, empty_pairs(), VerificationConfig())
    rows = files.set_index(Col.PATH)[Col.ROW]
    pair = tuple(sorted((rows[str(tmp_path / "0.png")], rows[str(tmp_path / "0_rotated.png")])))
    assert list(zip(matches[MatchCol.ROW_A], matches[MatchCol.ROW_B])) == [pair]
    match = matches.iloc[0]
    assert "rotate" in match[MatchCol.TRANSFORM]
    assert (match[MatchCol.STAGE], match[MatchCol.REASON]) == ("keypoints", "")
    assert 0 < match[MatchCol.INLIER_RATIO] <= 1 and math.isnan(match[MatchCol.CORRELATION])
