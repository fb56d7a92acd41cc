"""Tests of tasks.verify on generated images (and on two RSSCN7 scenes when the shared copy is present)."""

import io
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

from tasks import verify
from tasks.config import DecisionsConfig, VerificationConfig
from tasks.relations import relation_of
from tasks.schema import Col
from tasks.verify import ImageFeatures, correlate_pair, extract_features, verify_pair, verify_pairs
from tests.conftest import RSSCN7

SIZE = 400


def textured_scene(seed: int, size: int = SIZE) -> np.ndarray:
    """A colour 'aerial' scene: multi-scale smooth noise (texture) plus random fields and roofs (structure)."""
    rng = np.random.default_rng(seed)
    gray = np.zeros((size, size), np.float32)
    for sigma, weight in ((1.5, 0.3), (4, 0.5), (12, 1.0), (30, 1.2)):
        noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma)
        gray += weight * noise / noise.std()
    gray = (gray - gray.min()) / (gray.max() - gray.min()) * 160 + 40
    for _ in range(60):
        centre = rng.integers(0, size, 2)
        corners = (centre + rng.integers(-30, 30, (4, 2))).astype(np.int32)
        cv2.fillConvexPoly(gray, cv2.convexHull(corners), float(rng.integers(0, 255)))
    tint = rng.uniform(0.7, 1.0, 3).astype(np.float32)
    return np.clip(gray[:, :, None] * tint, 0, 255).astype(np.uint8)


def save(path: Path, image: np.ndarray, quality: int = 90) -> Path:
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


DUPLICATE_SHARE = DecisionsConfig().duplicate_share


def relation(result: verify.Verification) -> str:
    """The relation an accepted pair gets at the default duplicate share; "none" when rejected."""
    return relation_of(np.array([result.share_a]), np.array([result.share_b]), DUPLICATE_SHARE)[0] if (
        result.accepted) else "none"


def frame_relations(frame: pd.DataFrame) -> list[str]:
    """`relation` of each row of a frame `verify_pairs` returned."""
    related = relation_of(frame[verify.SHARE_A].to_numpy(), frame[verify.SHARE_B].to_numpy(), DUPLICATE_SHARE)
    return np.where(frame[verify.EVIDENCE] != "", related, "none").tolist()


def check(path_a: Path, path_b: Path) -> verify.Verification:
    features_a, features_b = extract_features(path_a), extract_features(path_b)
    assert features_a is not None and features_b is not None
    return verify_pair(features_a, features_b)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return textured_scene(seed=1)


@pytest.fixture(scope="module")
def scene_path(tmp_path_factory: pytest.TempPathFactory, scene: np.ndarray) -> Path:
    return save(tmp_path_factory.mktemp("scene") / "original.jpg", scene)


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
    assert result.inliers >= VerificationConfig().min_inliers
    assert 0.0 < result.score <= 1.0
    assert result.share_b >= 0.9


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_a_fit_from_the_copy_back_reads_as_the_copy_from_the_original(
    name: str, scene: np.ndarray, scene_path: Path, tmp_path: Path
) -> None:
    """The finer pass also matches from b to a (`both_ways`); that fit, turned round (`_reversed`), must describe
    b from a as a fit from a does."""
    edit, quality, expected_transform = TRANSFORMS[name]
    copy_path = save(tmp_path / f"{name}.jpg", edit(scene), quality)
    original, copy = extract_features(scene_path), extract_features(copy_path)
    assert original is not None and copy is not None
    settings = VerificationConfig()
    fits = [verify._fit(copy, original, mirrored=mirrored, settings=settings) for mirrored in (False, True)]

    verdicts = [verify._judge(verify._reversed(fit, original, copy), original, copy, settings) for fit in fits if fit]

    accepted = [verdict for verdict in verdicts if verdict.accepted]
    assert accepted and accepted[0].transform == expected_transform
    assert accepted[0].share_b >= 0.9


def test_mirror_copy_matches_as_strongly_as_a_rotated_copy(
    scene: np.ndarray, scene_path: Path, tmp_path: Path
) -> None:
    """Mirror descriptors must be true mirrors (position and orientation), not a weak partial match.

    Only the strongest `mirror_features` keypoints are mirrored, so the bar is set against that budget."""
    mirrored = check(scene_path, save(tmp_path / "hflip.jpg", cv2.flip(scene, 1)))
    rotated = check(scene_path, save(tmp_path / "rotate180.jpg", cv2.rotate(scene, cv2.ROTATE_180)))

    assert mirrored.inliers >= 0.5 * min(rotated.inliers, VerificationConfig().mirror_features)


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
    paths = [save(tmp_path / f"scene{seed}.jpg", textured_scene(seed)) for seed in range(2, 6)]
    features = [extract_features(path) for path in paths]

    for index, features_a in enumerate(features):
        for features_b in features[index + 1 :]:
            assert features_a is not None and features_b is not None
            assert relation(verify_pair(features_a, features_b)) == "none"
            assert verify_pair(features_a, features_b).transform == ""


def features_of(
    tmp_path: Path, name: str, image: np.ndarray, settings: VerificationConfig = VerificationConfig()
) -> ImageFeatures:
    features = extract_features(save(tmp_path / f"{name}.jpg", image), settings)
    assert features is not None
    return features


def zoomed_in(image: np.ndarray, top: int, left: int, zoom: float) -> np.ndarray:
    """The window of `image` at (top, left) that, enlarged `zoom` times, fills an image of the same size."""
    side = round(image.shape[0] / zoom)
    return cv2.resize(image[top : top + side, left : left + side], image.shape[1::-1], interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize(("zoom", "label"), [(2.0, "zoom2x"), (1.5, "zoom1.5x")])
def test_zoomed_view_correlates_both_ways(zoom: float, label: str, scene: np.ndarray, tmp_path: Path) -> None:
    settings = VerificationConfig(correlation_zooms=(1.5, 2.0))
    original = features_of(tmp_path, "original", scene, settings)
    zoomed = features_of(tmp_path, "zoomed", zoomed_in(scene, 90, 130, zoom), settings)

    forward, backward = correlate_pair(original, zoomed, settings), correlate_pair(zoomed, original, settings)

    assert (relation(forward), forward.transform) == ("overlap", label)
    assert backward.transform == label.replace(f"{zoom:g}x", f"{1 / zoom:.2g}x")
    assert forward.score >= settings.min_correlation and forward.inliers == 0
    # The zoomed view shows 1 / zoom^2 of the original, all of it shared.
    assert (forward.share_a, forward.share_b) == pytest.approx((1 / zoom**2, 1.0), abs=0.03)
    # Only the configured factors are tried: without 1.5 the 1.5x view is not found by correlation.
    only_2x = VerificationConfig(correlation_zooms=(2.0,))
    original, zoomed = (features_of(tmp_path, name, image, only_2x)
                        for name, image in (("original", scene), ("zoomed", zoomed_in(scene, 90, 130, zoom))))
    assert relation(correlate_pair(original, zoomed, only_2x)) == ("overlap" if zoom == 2.0 else "none")


def test_thin_shared_strip_is_an_overlap_found_by_correlation(scene: np.ndarray, tmp_path: Path) -> None:
    """Two 300 px windows sharing a 45 x 260 px strip (13 %), mostly inside ORB's border margin."""
    wide = textured_scene(seed=1, size=600)
    a, b = features_of(tmp_path, "a", wide[0:300, 0:300]), features_of(tmp_path, "b", wide[40:340, 255:555])

    result = verify_pair(a, b)

    assert (relation(result), result.transform, result.inliers) == ("overlap", "shift", 0)
    assert result.score >= VerificationConfig().min_correlation
    assert (result.share_a, result.share_b) == pytest.approx((45 * 260 / 300**2,) * 2, abs=0.04)
    # The overlap must be large enough: a minimum above its share rejects it.
    assert relation(correlate_pair(a, b, VerificationConfig(correlation_min_overlap=0.3))) == "none"


def test_a_ten_percent_strip_is_found_by_the_placement_search() -> None:
    """RSSCN7's c199 and c200 were cut from one image and share a strip of 10 % (14 rows of the 128-pixel
    thumbnail, 8 pixels aside): phase correlation of the whole thumbnails peaks elsewhere (at 0.034), and the
    search over every shift finds it."""
    c199, c200 = (extract_features(rsscn7_tile(name)) for name in ("cIndustry/c199.jpg", "cIndustry/c200.jpg"))

    result = verify_pair(c199, c200)

    assert (relation(result), result.transform, result.inliers) == ("overlap", "shift", 0)
    assert (result.share_a, result.share_b) == pytest.approx((14 * 120 / 128**2,) * 2, abs=0.01)
    assert result.score >= VerificationConfig().min_correlation


@pytest.mark.parametrize("names", [("cIndustry/c051.jpg", "cIndustry/c050.jpg"), ("aGrass/a053.jpg", "aGrass/a054.jpg")])
def test_parallel_lines_do_not_place_different_scenes(names: tuple[str, str]) -> None:
    """Rows of barns, and furrows beside a road: the best shift of these different scenes correlates at 0.72 and
    0.73 (below `search_min_correlation`), and as well 4 pixels further along the lines."""
    first, second = (extract_features(rsscn7_tile(name)) for name in names)

    assert relation(verify_pair(first, second)) == "none"


def test_a_placement_along_parallel_lines_is_not_distinct() -> None:
    """Two scenes with the same straight stripes and different texture correlate at any shift along the stripes:
    the search's best placement correlates well above `search_min_correlation` but is rejected, as the
    placement 4 pixels along the stripes correlates as well."""
    rng = np.random.default_rng(5)
    stripes = np.repeat(rng.uniform(60, 200, (32, 1)), 4, axis=0) * np.ones((1, 128))
    first, second = (np.clip(stripes + rng.normal(0, 6, stripes.shape), 0, 255).astype(np.uint8) for _ in range(2))
    settings = VerificationConfig()
    details = {id(view): verify._detail(view) for view in (first, second)}

    def detail(view: np.ndarray) -> np.ndarray:
        return details[id(view)]

    best = max(verify._overlap_correlation(details[id(first)], details[id(second)], 0, dx, -1.0)
               for dx in range(-100, 101))
    assert best >= settings.search_min_correlation
    assert verify._search_placements(first, second, detail, settings)[:2] == (-1.0, 0)


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
            region_fixed, region_moving = verify._overlap(fixed, moving, dy, dx)
            if region_fixed.size >= min_area:
                expected[dy, dx] = float((region_fixed * region_moving).sum()) / math.sqrt(
                    float((region_fixed**2).sum()) * float((region_moving**2).sum()))

    correlation, dy, dx = verify._best_shift(fixed, moving, min_area)

    assert correlation == pytest.approx(max(expected.values()), abs=1e-5)
    assert expected[dy, dx] == pytest.approx(correlation, abs=1e-5)


def test_best_shift_finds_none_without_a_positive_correlation() -> None:
    fixed = np.tile(np.float32([1.0, -1.0]), (8, 4))
    assert verify._best_shift(fixed, -fixed, fixed.size) == (-1.0, 0, 0)


@pytest.mark.parametrize("name", ["cIndustry/c010.jpg", "eForest/e020.jpg", "gParking/g030.jpg"])
def test_a_crop_of_a_small_tile_matches_it(name: str, tmp_path: Path) -> None:
    """A 64-pixel tile and its central half (45 pixels a side): ORB finds almost no corners at that size, so
    keypoints are found on images enlarged to `_MIN_KEYPOINT_SIDE` (those at least 32 pixels wide)."""
    tile = cv2.resize(cv2.imread(str(rsscn7_tile(name))), (64, 64), interpolation=cv2.INTER_AREA)
    whole, half = features_of(tmp_path, "whole", tile), features_of(tmp_path, "half", tile[10:55, 9:54])

    result = verify_pair(whole, half)

    assert (result.accepted, result.transform) == (True, "crop")
    assert (result.share_a, result.share_b) == pytest.approx(((45 / 64) ** 2, 1.0), abs=0.05)
    assert whole.width == 128 and half.width == 128  # both enlarged for their keypoints


def test_no_finer_pass_for_two_enlarged_images(tmp_path: Path) -> None:
    """Two images enlarged for their keypoints would show the finer pass only more corners on the same
    interpolated pixels; a pair with one image that has more pixels to show still gets it."""
    every_rejection = VerificationConfig(refine_min_inliers=0)  # any rejected pair shows "enough" matches
    large = [features_of(tmp_path, f"large{seed}", textured_scene(seed)) for seed in (1, 2)]  # 400 px, shrunk
    small = [features_of(tmp_path, f"small{seed}", textured_scene(seed, size=64)) for seed in (1, 2)]

    assert verify._verify(large[0], large[1], every_rejection)[1]
    assert verify._verify(large[0], small[1], every_rejection)[1]
    assert small[0].enlarged and not large[0].enlarged
    assert verify._verify(small[0], small[1], every_rejection)[1] is False


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


def test_a_watermark_stamped_on_a_copy_of_a_smooth_scene_does_not_hide_it(tmp_path: Path) -> None:
    """On smooth grass the watermark's text holds every strong corner and most of the fine detail of the copy, so
    no keypoints match and the whole overlap correlates weakly; away from the text it correlates as a copy does,
    and the median cell accepts it."""
    original = cv2.imread(str(rsscn7_tile("aGrass/a127.jpg")))
    first, copy = features_of(tmp_path, "original", original), features_of(
        tmp_path, "copy", with_overlay(original, "watermark"))

    assert relation(verify._match_keypoints(first, copy, VerificationConfig())) == "none"
    whole_overlap_only = VerificationConfig(refine_min_peak=1.0)
    assert relation(correlate_pair(first, copy, whole_overlap_only)) == "none"
    result = correlate_pair(first, copy)
    assert (relation(result), result.transform) == ("duplicate", "same")
    assert result.score >= VerificationConfig().min_correlation


def test_a_watermarked_copy_is_checked_cell_by_cell_when_a_half_of_its_overlap_fails(tmp_path: Path) -> None:
    """The text fills one half of the overlap more than the other: the whole overlap correlates at
    `correlation_min_half` but one half does not. The strong peak's placement must still be checked cell by cell
    (it was dropped, and 20 of 100 RSSCN7 grass and field tiles under this watermark were missed)."""
    original = cv2.imread(str(rsscn7_tile("aGrass/a021.jpg")))
    first, copy = features_of(tmp_path, "original", original), features_of(
        tmp_path, "copy", with_overlay(original, "watermark"))
    settings = VerificationConfig()

    assert relation(verify._match_keypoints(first, copy, settings)) == "none"
    detail = verify._detail_of_each()
    in_place = verify._overlap_correlation(
        detail(first.thumbnail), detail(copy.thumbnail), 0, 0, settings.correlation_min_half)
    assert in_place == -1.0
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

    monkeypatch.setattr(verify, "_flat", lambda gray: np.zeros(gray.shape, bool))  # the flat areas overlooked
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
    assert verify._detail_agreement(np.eye(3), no_inliers, first, second, verify._PLACEMENT_GRID) == -1.0


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
    similarity_only = VerificationConfig(min_detail_agreement=0.25)
    fit = verify._fit(first, copy, mirrored=False, settings=similarity_only)
    assert fit is not None
    agreements = [verify._detail_agreement(a_to_b, inliers, first, copy, verify._KEYPOINT_GRID)
                  for a_to_b, inliers in verify._alignments(fit, first, copy, similarity_only)]

    assert agreements[0] < similarity_only.min_detail_agreement <= max(agreements[1:])
    assert relation(verify_pair(first, copy)) == "duplicate"


def test_written_out_linear_algebra_matches_numpy() -> None:
    """Cell sums, stretch and spread are written out (numpy's linear algebra is slow beside busy threads); the
    spread is robust to a stray point off a line."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(40, 50, 3))
    rows, columns = np.array([2, 9, 20, 31, 38]), np.array([0, 12, 13, 30, 50])
    expected = [[values[rows[i] : rows[i + 1], columns[j] : columns[j + 1]].sum(axis=(0, 1)) for j in range(4)]
                for i in range(4)]
    assert np.allclose(verify._cell_sums(values, rows, columns), expected)
    linear = rng.normal(size=(2, 2))
    singular = np.linalg.svd(linear, compute_uv=False)
    assert verify._stretch(linear) == pytest.approx(singular[0] / singular[1])
    points = rng.normal(size=(4000, 2)) @ rng.normal(size=(2, 2))
    smaller_variance = np.linalg.eigvalsh(np.cov(points.T, bias=True))[0]
    assert verify._narrowest_spread(points) == pytest.approx(math.sqrt(smaller_variance), rel=0.1)
    along_a_caption = np.column_stack([np.linspace(10, 110, 17), np.full(17, 120.0)])
    assert verify._narrowest_spread(np.vstack([along_a_caption, [[60.0, 20.0]]])) < 0.1


def test_correlation_rejects_unrelated_rotated_and_tiny_images(scene: np.ndarray, tmp_path: Path) -> None:
    original = features_of(tmp_path, "original", scene)
    others = [features_of(tmp_path, f"other{seed}", textured_scene(seed)) for seed in range(2, 6)]
    rotated = features_of(tmp_path, "rotated", cv2.rotate(scene, cv2.ROTATE_90_CLOCKWISE))
    tiny = features_of(tmp_path, "tiny", scene[:24, :24])

    for other in others:
        assert correlate_pair(original, other) == verify.NO_MATCH
    assert correlate_pair(original, rotated) == verify.NO_MATCH  # rotations are the keypoints' job
    assert correlate_pair(original, tiny) == verify.NO_MATCH
    # The same pair of unrelated scenes is accepted only when the correlation floor and the agreement of its cells
    # are dropped to nothing.
    floorless = VerificationConfig(min_correlation=0.01, min_detail_agreement=-1.0)
    assert relation(correlate_pair(original, others[0], floorless)) != "none"


def rsscn7_tile(name: str) -> Path:
    path = RSSCN7 / name
    if not path.exists():
        pytest.skip(f"RSSCN7 development data not present at {RSSCN7}")
    return path


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


def test_unreadable_file_has_no_features(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")

    assert extract_features(broken) is None
    assert extract_features(tmp_path / "missing.jpg") is None


def test_image_too_small_for_keypoints_matches_nothing(scene: np.ndarray, scene_path: Path, tmp_path: Path) -> None:
    tiny = extract_features(save(tmp_path / "tiny.jpg", scene[:24, :24]))
    original = extract_features(scene_path)
    assert tiny is not None and original is not None

    assert len(tiny.points) == 0
    assert verify_pair(tiny, original) == verify.NO_MATCH
    assert verify_pair(original, tiny) == verify.NO_MATCH


@pytest.mark.parametrize("size", [(1, 1), (3, 60), (60, 2)])
def test_degenerate_image_has_no_features_and_matches_nothing(
    size: tuple[int, int], scene: np.ndarray, scene_path: Path, tmp_path: Path
) -> None:
    """A 1-pixel image or a thin strip must not crash OpenCV's keypoint pyramid; it simply matches nothing."""
    degenerate = extract_features(save(tmp_path / "degenerate.png", scene[: size[0], : size[1]]))
    original = extract_features(scene_path)
    assert degenerate is not None and original is not None

    assert len(degenerate.points) == len(degenerate.mirror_points) == 0 and degenerate.thumbnail.size == 0
    assert verify_pair(degenerate, original) == verify_pair(original, degenerate) == verify.NO_MATCH


def test_features_are_plain_arrays_that_survive_pickling(scene_path: Path) -> None:
    features = extract_features(scene_path)
    assert features is not None

    restored = pickle.loads(pickle.dumps(features))

    assert isinstance(restored, ImageFeatures)
    assert restored.descriptors.shape == (len(restored.points), 32)
    assert restored.mirror_descriptors.shape == (len(restored.mirror_points), 32)
    assert restored.thumbnail.shape == (128, 128) and restored.thumbnail.dtype == np.uint8
    assert len(restored.points) >= VerificationConfig().n_features // 2
    assert verify_pair(restored, features).transform == "same"


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
    real_extract = verify.extract_features

    def counting_extract(path: str, settings: VerificationConfig) -> ImageFeatures | None:
        if settings.max_side == VerificationConfig().max_side:  # the finer second pass is counted separately
            extracted.append(str(path))
        return real_extract(path, settings)

    monkeypatch.setattr(verify, "extract_features", counting_extract)

    result = verify_pairs(pairs)

    assert sorted(extracted) == sorted({str(scene_path), str(rotated), str(other), str(broken)})
    assert list(result["pair_id"]) == [1, 2, 3, 4]
    assert frame_relations(result) == ["duplicate", "none", "none", "none"]
    assert list(result["transform"]) == ["rotate180", "", "", ""]
    assert result.loc[0, "inliers"] >= VerificationConfig().min_inliers
    assert set(result.columns) >= set(verify.RESULT_COLUMNS)
    assert verify.EVIDENCE not in pairs.columns


@pytest.mark.parametrize(
    ("refine_min_inliers", "refine_min_peak", "refined"), [(0, 1.0, True), (1000, 0.0, True), (1000, 1.0, False)]
)
def test_only_rejected_pairs_with_enough_inliers_or_a_peak_are_matched_again_finer(
    refine_min_inliers: int, refine_min_peak: float, refined: bool, scene: np.ndarray, scene_path: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rotated = save(tmp_path / "rotated.jpg", cv2.rotate(scene, cv2.ROTATE_180))
    other = save(tmp_path / "other.jpg", textured_scene(seed=9))
    pairs = pd.DataFrame({"path_a": [str(scene_path), str(scene_path)], "path_b": [str(rotated), str(other)]})
    settings = VerificationConfig(refine_min_inliers=refine_min_inliers, refine_min_peak=refine_min_peak)
    finer: list[str] = []
    real_extract = verify.extract_features

    def counting_extract(path: str, settings: VerificationConfig) -> ImageFeatures | None:
        if settings.max_side == settings.refine_max_side:
            finer.append(str(path))
        return real_extract(path, settings)

    monkeypatch.setattr(verify, "extract_features", counting_extract)

    result = verify_pairs(pairs, settings)

    # The copy is settled at the working size; only the rejected pair can reach the finer pass.
    assert sorted(finer) == (sorted([str(scene_path), str(other)]) if refined else [])
    assert frame_relations(result) == ["duplicate", "none"]


def test_real_furrowed_overlap_is_found_by_the_finer_pass_its_correlation_peak_calls_for() -> None:
    """RSSCN7 tiles b125 and b126 share 35 % of a furrowed field: two keypoints match at the working size and
    the fine furrows correlate at 0.39 in the thumbnails, but the correlation surface peaks clearly, so the pair
    gets the finer keypoint pass, which finds the shift."""
    pairs = pd.DataFrame(
        {"path_a": [str(rsscn7_tile("bField/b125.jpg"))], "path_b": [str(rsscn7_tile("bField/b126.jpg"))]}
    )

    found = verify_pairs(pairs)
    without_peak_trigger = verify_pairs(pairs, VerificationConfig(refine_min_peak=1.0))

    assert frame_relations(found) == ["overlap"]
    assert found.loc[0, "inliers"] >= VerificationConfig().min_inliers
    assert frame_relations(without_peak_trigger) == ["none"]


def test_real_cropped_turned_mirrored_copy_is_found_by_the_finer_pass_mirrored_keypoints(tmp_path: Path) -> None:
    """A 36 % crop of RSSCN7 tile e151, turned and mirrored: the working size rejects it with a few mirrored
    inliers, and the finer pass finds it only if it describes as large a share of its keypoints mirrored."""
    original = rsscn7_tile("eForest/e151.jpg")
    with Image.open(original) as image:
        copy = image.convert("RGB").crop((40, 120, 280, 360)).transpose(Image.Transpose.ROTATE_90)
        copy.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "copy.jpg", quality=90)
    pairs = pd.DataFrame({"path_a": [str(original)], "path_b": [str(tmp_path / "copy.jpg")]})
    settings = VerificationConfig()
    features = [extract_features(path, settings) for path in pairs.iloc[0]]

    found = verify_pairs(pairs, settings)

    assert relation(verify_pair(*features, settings)) == "none"  # type: ignore[arg-type]
    assert verify._refined(settings).mirror_features == 200
    assert (frame_relations(found)[0], found.loc[0, "transform"]) == ("overlap", "hflip+rotate90+crop")
    assert (found.loc[0, "share_a"], found.loc[0, "share_b"]) == pytest.approx((0.36, 1.0), abs=0.04)


def test_real_heavy_crop_is_found_by_the_finer_pass_matching_from_the_crop(tmp_path: Path) -> None:
    """A quarter of RSSCN7 tile c109, mirrored and turned by 25 degrees: from the original most keypoints lie
    outside the crop and the finer pass's match fails; from the crop to the original it holds."""
    original = rsscn7_tile("cIndustry/c109.jpg")
    with Image.open(original) as image:
        copy = image.convert("RGB").crop((177, 55, 377, 255)).rotate(-25, resample=Image.Resampling.BICUBIC)
        copy.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "copy.jpg", quality=85)
    pairs = pd.DataFrame({"path_a": [str(original)], "path_b": [str(tmp_path / "copy.jpg")]})
    fine = verify._refined(VerificationConfig())
    fine_original, fine_copy = (extract_features(path, fine) for path in pairs.iloc[0])
    assert fine_original is not None and fine_copy is not None

    found = verify_pairs(pairs, VerificationConfig())

    assert relation(verify._match_keypoints(fine_original, fine_copy, fine)) == "none"
    assert (frame_relations(found)[0], found.loc[0, "transform"]) == ("overlap", "hflip+rotate+crop")
    assert found.loc[0, "share_a"] == pytest.approx(0.25, abs=0.04) and found.loc[0, "share_b"] >= 0.9


def test_real_zoomed_tile_is_found_by_correlation() -> None:
    """RSSCN7 tile a029 is a 2x zoom into part of a184: too few keypoints match, the correlation finds it."""
    zoomed_out, zoomed_in = rsscn7_tile(ZOOM_PAIR[0]), rsscn7_tile(ZOOM_PAIR[1])
    features_out, features_in = extract_features(zoomed_out), extract_features(zoomed_in)
    assert features_out is not None and features_in is not None

    keypoints_only = verify_pair(features_out, features_in, VerificationConfig(min_correlation=1.0))
    result = verify_pair(features_out, features_in)

    assert relation(keypoints_only) == "none"
    assert relation(result) != "none"
    assert result.transform.split("+")[0] == "zoom2x"  # part of a029 lies outside a184: an overlap, shifted
    assert result.score >= VerificationConfig().min_correlation
    assert correlate_pair(features_in, features_out).transform.split("+")[0] == "zoom0.5x"


def test_verify_pairs_accepts_an_empty_frame() -> None:
    result = verify_pairs(pd.DataFrame({"path_a": [], "path_b": []}))

    assert result.empty
    assert set(verify.RESULT_COLUMNS) <= set(result.columns)


def test_settings_are_frozen_bounded_and_closed() -> None:
    settings = VerificationConfig()
    with pytest.raises(pydantic.ValidationError):
        settings.min_inliers = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        VerificationConfig(min_inliers=0)
    with pytest.raises(pydantic.ValidationError):
        VerificationConfig(min_inlier=10)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        VerificationConfig(correlation_zooms=(0.5,))


def test_candidates_include_a_rotated_copy_the_embedding_ranks_low(tmp_path):
    """A rotated copy keeps its colour signature: it is proposed even when no embedding pair links it."""
    from tasks.ingest import find_files, ingest
    from tasks.similarity import PAIR_A, PAIR_B, empty_pairs
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
    assert list(zip(matches[PAIR_A], matches[PAIR_B])) == [pair]
    assert "rotate" in matches["transform"].iloc[0]


def test_each_images_nearest_neighbours_are_verified_whatever_their_similarity() -> None:
    """Below both similarity floors, a pair is still a candidate when it is an image's nearest by either measure."""
    from tasks.imagestats import SIGNATURE
    from tasks.similarity import PAIR_A, PAIR_B, SIMILARITY
    from tasks.verify import select_candidates

    signatures = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 1, 0], [0, 0, 0.6, 0.8]], np.float32)
    files = pd.DataFrame({Col.ROW: [0, 1, 2, 3], SIGNATURE: list(signatures)})
    pairs = pd.DataFrame({PAIR_A: [0], PAIR_B: [2], SIMILARITY: [0.5]})  # the embedding's only (weak) neighbours

    def chosen(always: int) -> list[tuple[int, int]]:
        settings = VerificationConfig(candidates_always=always, candidates_by_part=0, candidates_by_name=0,
                                      candidates_by_structure=0)
        candidates = select_candidates(files, pairs, settings)
        return list(zip(candidates[PAIR_A], candidates[PAIR_B]))

    assert chosen(1) == [(0, 1), (0, 2), (2, 3)]  # colour cosine 0.6 and similarity 0.5, but nearest
    assert chosen(0) == []


def test_verify_pairs_keeps_row_order_across_batches(scene: np.ndarray, scene_path: Path, tmp_path: Path) -> None:
    """Rows are verified in batches; each row keeps its own verdict."""
    paths = [str(scene_path), str(save(tmp_path / "rotated.jpg", cv2.rotate(scene, cv2.ROTATE_180))),
             str(save(tmp_path / "zoomed.jpg", zoomed_in(scene, 60, 80, 2.0))),
             str(save(tmp_path / "other.jpg", textured_scene(seed=9)))]
    rng = np.random.default_rng(3)
    rows = [tuple(rng.choice(paths, 2, replace=False)) for _ in range(3 * verify._PAIRS_PER_BATCH + 5)]
    pairs = pd.DataFrame(rows, columns=["path_a", "path_b"])
    single_pass = VerificationConfig(refine_min_inliers=1000, refine_min_peak=1.0)  # no finer pass: one verdict each
    features = {path: extract_features(path, single_pass) for path in paths}

    result = verify_pairs(pairs, single_pass)

    expected = [verify_pair(features[a], features[b], single_pass) for a, b in rows]  # type: ignore[arg-type]
    assert frame_relations(result) == [relation(verdict) for verdict in expected]
    assert list(result["transform"]) == [verdict.transform for verdict in expected]
    assert {"rotate180", "zoom2x", "zoom0.5x"} <= set(result["transform"])


def test_correlation_spectra_are_taken_once_per_image(
    scene: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pair of 6 unrelated images is correlated (the keypoints reject them all), yet each image's views are
    transformed once, when its features are extracted: 6 images x (1 + 1 zoom) spectra, not 2 per pair."""
    paths = [str(save(tmp_path / f"scene{seed}.jpg", textured_scene(seed))) for seed in range(6)]
    pairs = pd.DataFrame(list(itertools.combinations(paths, 2)), columns=["path_a", "path_b"])
    transformed, real_phases = [], verify._phases
    monkeypatch.setattr(verify, "_phases", lambda detail: transformed.append(detail.shape) or real_phases(detail))
    verify.FEATURE_CACHE.limit(0)  # nothing from earlier tests

    result = verify_pairs(pairs, VerificationConfig(correlation_zooms=(2.0,), refine_min_inliers=1000,
                                                    refine_min_peak=1.0))

    assert (result[verify.EVIDENCE] == "").all()
    assert len(pairs) == 15 and len(transformed) == 6 * 2


def test_correlation_needs_features_made_for_its_zooms(scene: np.ndarray, tmp_path: Path) -> None:
    made_for_2x = features_of(tmp_path, "scene", scene, VerificationConfig(correlation_zooms=(2.0,)))
    assert made_for_2x.phases.shape == (2, 128, 65)
    with pytest.raises(ValueError, match=r"correlation zooms \(2.0,\), not \(1.5, 2.0\)"):
        correlate_pair(made_for_2x, made_for_2x, VerificationConfig(correlation_zooms=(1.5, 2.0)))


def test_chunks_by_locality_keep_partners_together():
    """A chain of 1,000 images whose rows are shuffled: chunks of 100 pairs in row order would each need images
    from all over the dataset; chunks by locality need 101, and every pair is in exactly one."""
    from tasks.similarity import PAIR_A, PAIR_B
    from tasks.verify import chunks_by_locality

    rows = np.random.default_rng(3).permutation(1000)
    chain = pd.DataFrame({PAIR_A: np.minimum(rows[:-1], rows[1:]), PAIR_B: np.maximum(rows[:-1], rows[1:])})
    chunks = chunks_by_locality(chain, 100)
    together = pd.concat(chunks).sort_values([PAIR_A, PAIR_B]).reset_index(drop=True)
    pd.testing.assert_frame_equal(together, chain.sort_values([PAIR_A, PAIR_B]).reset_index(drop=True))
    assert len(chunks) == 10
    assert max(len(set(chunk[PAIR_A]) | set(chunk[PAIR_B])) for chunk in chunks) <= 101
    assert chunks_by_locality(chain.iloc[0:0], 100) == []


def test_a_zoom_has_the_colours_of_one_part_of_its_original(scene: np.ndarray) -> None:
    """A 2x zoom into one corner of a tile whose corners differ in colour: its colours are far from the whole
    tile's but close to one part's, which is what `part_neighbours` searches."""
    from tasks.imagestats import colour_signatures

    half = SIZE // 2
    tile = scene.copy()
    for (top, left), tint in zip([(0, 0), (0, half), (half, 0), (half, half)],
                                 [(40, 160, 60), (170, 90, 30), (60, 60, 190), (150, 150, 150)], strict=True):
        region = tile[top : top + half, left : left + half].astype(np.float32)
        tile[top : top + half, left : left + half] = np.clip(region * 0.5 + np.array(tint) * 0.5, 0, 255)
    zoom = cv2.resize(tile[8 : 8 + half, 12 : 12 + half], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    whole, parts = colour_signatures(Image.fromarray(tile))
    zoom_whole, _ = colour_signatures(Image.fromarray(zoom))

    assert parts.dtype == np.uint8 and parts.shape == (verify.PART_WINDOWS * len(whole),)
    best_part = float((parts.reshape(verify.PART_WINDOWS, -1) / 255.0 @ zoom_whole).max())
    assert best_part > 0.9
    assert float(whole @ zoom_whole) < best_part - 0.2


def test_grey_zooms_are_proposed_by_their_parts() -> None:
    """Panchromatic imagery: RSSCN7's grass and river tiles in grey, whose listed natural 2x zooms the part search
    must propose among 400 tiles of similar ground. Grey pixels are counted by value alone at 64 levels; with the
    eight levels of value that colour pixels get, 25 of these 48 zooms were proposed (now 41)."""
    from tasks.imagestats import colour_signatures

    overlaps = pd.read_csv(Path(__file__).resolve().parents[1] / "bench" / "rsscn7_overlaps.csv", comment="#")
    tiles = sorted(RSSCN7.glob("aGrass/*.jpg")) + sorted(RSSCN7.glob("dRiverLake/*.jpg"))
    index = {f"{tile.parent.name}/{tile.name}": position for position, tile in enumerate(tiles)}
    signatures = [colour_signatures(Image.open(tile).convert("L")) for tile in tiles]

    found = verify.part_neighbours(np.stack([whole for whole, _ in signatures]),
                                   np.stack([parts for _, parts in signatures]), np.arange(len(tiles)), 2)

    proposed = set(zip(found["row_a"], found["row_b"]))
    zooms = overlaps[(overlaps["kind"] == "zoom2x") & overlaps["a"].isin(index) & overlaps["b"].isin(index)]
    hits = [tuple(sorted((index[a], index[b]))) in proposed for a, b in zip(zooms["a"], zooms["b"], strict=True)]
    assert len(hits) == 48 and sum(hits) >= 36


def test_part_neighbours_match_a_brute_force_search() -> None:
    """The blocked search returns, for every row, the k rows whose best part is nearest its whole signature."""
    rng = np.random.default_rng(11)
    n, k, dims = 17, 3, 8
    signatures = rng.random((n, dims), dtype=np.float32)
    signatures /= np.linalg.norm(signatures, axis=1, keepdims=True)
    parts = rng.integers(0, 256, size=(n, verify.PART_WINDOWS * dims), dtype=np.uint8)
    rows = np.arange(100, 100 + n)

    found = verify.part_neighbours(signatures, parts, rows, k)

    scores = (signatures @ (parts.reshape(-1, dims).astype(np.float32) / 255.0).T).reshape(n, n, -1).max(axis=2)
    np.fill_diagonal(scores, -np.inf)
    expected = {}
    for query in range(n):
        for rank, other in enumerate(np.argsort(-scores[query])[:k]):
            pair = (min(rows[query], rows[other]), max(rows[query], rows[other]), rank)
            expected[pair] = float(scores[query, other])
    got = {(a, b, r): s for a, b, r, s in zip(found["row_a"], found["row_b"], found["rank"], found["similarity"])}
    assert got.keys() == expected.keys()
    assert np.allclose([got[key] for key in expected], list(expected.values()), atol=1e-5)


def test_name_neighbours_follow_natural_order_across_folders() -> None:
    paths = pd.Series(["/d/train/a/tile_10.jpg", "/d/val/b/tile_9.jpg", "/d/unlabeled/tile_11.png", "/d/x/other.jpg"])

    pairs = verify.name_neighbours(paths, np.array([0, 1, 2, 3]), k=1)

    assert sorted(zip(pairs["row_a"], pairs["row_b"])) == [(0, 1), (0, 2), (1, 3)]  # other, 9, 10, 11
    assert len(verify.name_neighbours(paths, np.array([0, 1, 2, 3]), k=2)) == 5


def test_grid_neighbours_pair_tiles_next_to_each_other_on_either_axis() -> None:
    """Tiles named by row and column, or by pixel offsets, in any folders: each is paired with the next along each
    axis (the tile below is three files further in natural order here); names with one number are left alone."""
    cells = [(row, column) for row in range(3) for column in range(3)]
    paths = pd.Series([f"/d/{'val' if cell == (1, 1) else 'train'}/scene_r{cell[0]}_c{cell[1]}.jpg" for cell in cells]
                      + [f"/d/train/offsets_{256 * x}_{256 * y}.png" for x, y in ((0, 0), (1, 0), (0, 1))]
                      + ["/d/train/tile_1.jpg", "/d/train/tile_2.jpg"])
    sources, targets = verify.grid_neighbours(paths, np.arange(len(paths)))

    found = {frozenset((paths[a], paths[b])) for a, b in zip(sources, targets)}
    expected = {frozenset((f"scene_r{r}_c{c}", f"scene_r{r + dr}_c{c + dc}")) for r, c in cells
                for dr, dc in ((0, 1), (1, 0)) if r + dr < 3 and c + dc < 3}
    expected |= {frozenset(("offsets_0_0", "offsets_256_0")), frozenset(("offsets_0_0", "offsets_0_256"))}
    assert {frozenset(Path(path).stem for path in pair) for pair in found} == expected


def test_part_and_name_neighbours_are_verified_whatever_their_similarity() -> None:
    from tasks.imagestats import PART_SIGNATURES, SIGNATURE
    from tasks.similarity import PAIR_A, PAIR_B, empty_pairs
    from tasks.verify import select_candidates

    signatures = np.eye(4, dtype=np.float32)  # no two images share a colour
    parts = np.zeros((4, verify.PART_WINDOWS, 4), np.uint8)
    parts[2, 5] = [255, 0, 0, 0]  # one part of image 2 has image 0's colours
    files = pd.DataFrame({Col.ROW: [0, 1, 2, 3], Col.PATH: ["/a/9.jpg", "/a/z.jpg", "/b/1.jpg", "/a/10.jpg"],
                          SIGNATURE: list(signatures), PART_SIGNATURES: list(parts.reshape(4, -1))})
    no_neighbours = dict(candidates_always=0, candidate_colour_similarity=1.0, candidate_similarity=1.0,
                         candidates_by_structure=0)

    def chosen(by_part: int, by_name: int) -> set[tuple[int, int]]:
        settings = VerificationConfig(candidates_by_part=by_part, candidates_by_name=by_name, **no_neighbours)
        candidates = select_candidates(files, empty_pairs(), settings)
        return set(zip(candidates[PAIR_A], candidates[PAIR_B]))

    assert chosen(0, 0) == set()
    assert (0, 2) in chosen(1, 0)
    assert chosen(0, 1) == {(0, 2), (0, 3), (1, 3)}  # 1.jpg, 9.jpg, 10.jpg, z.jpg


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(buffer)


def test_structure_signature_survives_changes_of_colour_and_quality(scene: np.ndarray) -> None:
    """Grey, re-coloured, re-exposed, noisy, shrunk and heavily re-compressed copies keep the original's
    structure signature; another scene does not share it."""
    from tasks.imagestats import structure_signature

    original = Image.fromarray(scene)
    pixels = scene.astype(np.float32)
    copies = {
        "grey": original.convert("L"),
        "channels swapped": Image.fromarray(scene[:, :, ::-1].copy()),
        "gamma and contrast": Image.fromarray(np.clip(255 * (pixels / 255) ** 0.6 * 0.7 + 30, 0, 255).astype(np.uint8)),
        "noise": Image.fromarray(np.clip(pixels + np.random.default_rng(2).normal(0, 15, scene.shape), 0, 255)
                                 .astype(np.uint8)),
        "quarter size": original.resize((SIZE // 4, SIZE // 4), Image.Resampling.LANCZOS),
        "JPEG quality 10": _jpeg(original, 10),
    }

    signature = structure_signature(original)

    assert signature.dtype == np.int8 and signature.shape == (64,)
    unit = signature / 127.0
    for name, copy in copies.items():
        assert float(unit @ (structure_signature(copy) / 127.0)) > 0.95, name
    assert abs(float(unit @ (structure_signature(Image.fromarray(textured_scene(seed=9))) / 127.0))) < 0.5
    assert not structure_signature(Image.new("RGB", (50, 50), (90, 120, 30))).any()  # a flat image: no structure


def test_dihedral_variants_are_the_signatures_of_the_flips_and_quarter_turns(scene: np.ndarray) -> None:
    from tasks.imagestats import DIHEDRAL_VARIANTS, dihedral_variants, structure_signature

    original = Image.fromarray(scene)
    variants = dihedral_variants(structure_signature(original)[None, :]) / 127.0
    assert variants.shape == (DIHEDRAL_VARIANTS, 64)
    best = []
    for turn in [None, *Image.Transpose]:
        turned = original if turn is None else original.transpose(turn)
        similarities = variants @ (structure_signature(turned) / 127.0)
        assert similarities.max() > 0.99, turn
        best.append(int(similarities.argmax()))
    assert best[0] == 0
    assert sorted(best) == list(range(DIHEDRAL_VARIANTS))  # each flip or turn is exactly one variant


def test_structure_neighbours_are_verified_when_similar_enough() -> None:
    """A copy whose colours changed has nothing in common with its original by colour signature; its structure
    (here mirrored and a little changed) makes it a candidate, above the floor only."""
    from tasks.imagestats import PART_SIGNATURES, SIGNATURE, STRUCTURE, dihedral_variants
    from tasks.similarity import PAIR_A, PAIR_B, empty_pairs
    from tasks.verify import select_candidates

    rng = np.random.default_rng(4)
    structures = rng.normal(size=(4, 64))
    structures[1] = dihedral_variants(structures[0][None, :])[2] + rng.normal(0, 0.2, 64)
    structures = np.round(structures / np.linalg.norm(structures, axis=1, keepdims=True) * 127).astype(np.int8)
    cosine = float(dihedral_variants(structures[0][None, :])[2].astype(float) @ structures[1]) / 127**2
    files = pd.DataFrame({Col.ROW: [0, 1, 2, 3], Col.PATH: ["/a/x.jpg", "/b/y.jpg", "/c/z.jpg", "/d/w.jpg"],
                          SIGNATURE: list(np.eye(4, dtype=np.float32)), STRUCTURE: list(structures),
                          PART_SIGNATURES: list(np.zeros((4, verify.PART_WINDOWS * 4), np.uint8))})

    def chosen(by_structure: int, floor: float) -> set[tuple[int, int]]:
        settings = VerificationConfig(candidates_always=0, candidate_colour_similarity=1.0, candidate_similarity=1.0,
                                      candidates_by_part=0, candidates_by_name=0,
                                      candidates_by_structure=by_structure, candidate_structure_similarity=floor)
        candidates = select_candidates(files, empty_pairs(), settings)
        return set(zip(candidates[PAIR_A], candidates[PAIR_B]))

    assert 0.9 < cosine < 0.99
    assert chosen(1, 0.9) == {(0, 1)}
    assert chosen(1, 0.99) == set()
    assert chosen(0, 0.9) == set()


def test_correlation_must_hold_in_both_halves_of_the_overlap() -> None:
    """A strong feature shared by one half of an overlap (a shoreline, a road) cannot carry a match alone."""
    rng = np.random.default_rng(5)
    fixed = rng.normal(0.0, 1.0, (60, 20)).astype(np.float32)
    moving = fixed.copy()
    assert verify._overlap_correlation(fixed, moving, 0, 0, min_half=0.5) == pytest.approx(1.0)
    moving[30:] = rng.normal(0.0, 1.0, (30, 20))  # the lower half is different ground
    fixed[:30] *= 4.0
    moving[:30] *= 4.0  # ... and the shared upper half holds most of the detail
    assert verify._normalised_correlation(fixed, moving) > 0.9
    assert verify._overlap_correlation(fixed, moving, 0, 0, min_half=0.5) == -1.0
    assert verify._overlap_correlation(fixed, moving, 0, 0, min_half=-1.0) > 0.9


def test_packed_cross_power_inverts_to_the_phase_correlation_surface() -> None:
    """OpenCV's inverse of the packed spectrum is the inverse real transform of the whitened cross-power spectrum
    (numpy's, as the reference), and peaks at the shift between two views."""
    rng = np.random.default_rng(2)
    view = rng.integers(0, 256, (verify._THUMBNAIL_SIDE, verify._THUMBNAIL_SIDE), np.uint8)
    shifted = np.roll(view, (5, -9), axis=(0, 1))
    fixed_phases, moving_phases = (verify._phases(verify._detail(image)) for image in (view, shifted))
    difference = 2 * np.pi * (fixed_phases.astype(np.float64) - moving_phases) / verify._PHASE_LEVELS
    expected = np.fft.irfft2(np.exp(1j * difference), s=view.shape)

    surface = cv2.idft(verify._packed_cross_power(fixed_phases, moving_phases, verify._COSINES, verify._SINES),
                       flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)

    np.testing.assert_allclose(surface, expected, atol=1e-6)
    assert np.unravel_index(surface.argmax(), surface.shape) == (verify._THUMBNAIL_SIDE - 5, 9)


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

    matches = verify._one_to_one_matches(distances, neighbours, 0.8, targets)

    np.testing.assert_array_equal(matches, expected)
