"""Classification on hand-made rows, pairs and statistics: no images, no engine."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import classify as classify_stage
from tasks.classify import DETECTORS, connected_groups, detector
from tasks.config import CurateConfig, apply_assignments, parse_config
from tasks.geometry import shares
from tasks.relations import build_relations, pairs_with_paths
from tasks.schema import Action, Col, Issue, MatchCol, Relation
from tasks.similarity import PAIR_A, PAIR_B, SIMILARITY, Similarity, empty_pairs
from tests.conftest import RSSCN7

DUPLICATE, OVERLAP = Relation.DUPLICATE.value, Relation.OVERLAP.value
# Shares each relation's made-up matches get, and a map that makes them: a copy shows all of the other; an overlap
# is the next tile to the right, sharing 30 % of each (so two overlaps in a row share nothing).
SHARES = {DUPLICATE: (1.0, 1.0), OVERLAP: (0.3, 0.3)}
MAPS = {DUPLICATE: np.eye(3), OVERLAP: np.array([[1.0, 0.0, -0.7], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])}

CLEAN_STATS = {Col.BLUR: 500.0, Col.BRIGHTNESS: 120.0, Col.CONTRAST: 40.0, Col.SHARPNESS: 0.0, Col.FINE_DETAIL: -0.5,
               Col.BLACK_LEVEL: 20.0}


def make_files(rows: list[dict]) -> pd.DataFrame:
    defaults = {Col.LABEL: None, Col.VALID: True, Col.ERROR: None, Col.WIDTH: 100, Col.HEIGHT: 100, Col.BYTES: 1000,
                Col.FORMAT: "JPEG", **CLEAN_STATS}
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    frame.insert(0, Col.ROW, range(len(frame)))
    frame[Col.SHA256] = frame.get(Col.SHA256, pd.Series([f"h{i}" for i in range(len(frame))]))
    frame[Col.SHA256] = [sha if isinstance(sha, str) else f"h{i}" for i, sha in enumerate(frame[Col.SHA256])]
    for column in (Col.WIDTH, Col.HEIGHT, Col.BYTES):
        frame[column] = frame[column].astype("Int64")
    frame[Col.LABEL] = frame[Col.LABEL].astype("string")
    return frame


def make_similarity(pairs: list[tuple[int, int, float]]) -> Similarity:
    pair_frame = pd.DataFrame(pairs, columns=[PAIR_A, PAIR_B, SIMILARITY]).astype(
        {PAIR_A: "int64", PAIR_B: "int64", SIMILARITY: "float64"}
    )
    return Similarity(pairs=pair_frame, engine="test", skipped=None, unanalysed={}, embedded=0)


def make_matches(matches: list[tuple[int, int, str] | tuple[int, int, str, np.ndarray]]) -> pd.DataFrame:
    """Verified pairs as the verification stage returns them, with the shares and maps of `SHARES` and `MAPS`, or
    the map given as a fourth item (and the shares it makes)."""
    rows = []
    for a, b, relation, *given in matches:
        a_to_b = given[0] if given else MAPS[relation]
        share_a, share_b = shares(a_to_b) if given else SHARES[relation]
        rows.append({PAIR_A: a, PAIR_B: b, SIMILARITY: 0.9, MatchCol.EVIDENCE: "keypoints", MatchCol.INLIER_RATIO: 0.8,
                     MatchCol.CORRELATION: np.nan, MatchCol.INLIERS: 40,
                     MatchCol.TRANSFORM: "rotate90" if relation == DUPLICATE else "shift", MatchCol.SHARE_A: share_a,
                     MatchCol.SHARE_B: share_b, MatchCol.A_TO_B: np.asarray(a_to_b, float).ravel()})
    return pd.DataFrame(
        rows,
        columns=[PAIR_A, PAIR_B, SIMILARITY, MatchCol.EVIDENCE, MatchCol.INLIER_RATIO, MatchCol.CORRELATION, MatchCol.INLIERS, MatchCol.TRANSFORM, MatchCol.SHARE_A, MatchCol.SHARE_B,
                 MatchCol.A_TO_B],
    ).astype({PAIR_A: "int64", PAIR_B: "int64"})


NO_MATCHES = make_matches([])


def classify_with_pairs(files: pd.DataFrame, similarity: Similarity, matches: pd.DataFrame, config: CurateConfig,
                        overrides: dict[str, Action] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The classification stage on verified `matches`, through the relations they make: the manifest, and the
    related pairs by path as `pairs.parquet` holds them."""
    relations = build_relations(files, matches, config.decisions.duplicate_share)
    manifest = classify_stage.classify(files, similarity, relations, config, overrides)
    return manifest, pairs_with_paths(relations, manifest.set_index(Col.ROW)[Col.PATH])


def classify(files: pd.DataFrame, similarity: Similarity, matches: pd.DataFrame, config: CurateConfig,
             overrides: dict[str, Action] | None = None) -> pd.DataFrame:
    """The manifest of `classify_with_pairs`."""
    return classify_with_pairs(files, similarity, matches, config, overrides)[0]


def by_path(manifest: pd.DataFrame) -> dict[str, pd.Series]:
    return {row[Col.PATH]: row for _, row in manifest.iterrows()}


def test_a_second_detector_for_an_issue_is_refused():
    """Importing tasks.classify already fails when an issue has no detector, so this checks the other half of
    "exactly one": registering a second detector for an issue raises and leaves the registry as it was."""
    registered = dict(DETECTORS)

    def second_opinion(evidence):
        raise AssertionError("never registered, never run")

    with pytest.raises(ValueError, match="already has a detector"):
        detector(Issue.DARK)(second_opinion)
    assert DETECTORS == registered


def test_bands_groups_and_keeper_rule():
    files = make_files(
        [
            {Col.PATH: "/d/train/a.jpg", Col.SPLIT: "train", Col.LABEL: "x"},
            {Col.PATH: "/d/val/a_copy.jpg", Col.SPLIT: "val", Col.LABEL: "x"},  # evaluation split wins
            {Col.PATH: "/d/train/b.jpg", Col.SPLIT: "train", Col.LABEL: "x"},
            {Col.PATH: "/d/train/b_small.jpg", Col.SPLIT: "train", Col.LABEL: "x", Col.WIDTH: 50, Col.HEIGHT: 50},
            {Col.PATH: "/d/train/c.jpg", Col.SPLIT: "train", Col.LABEL: "x"},
            {Col.PATH: "/d/train/d.jpg", Col.SPLIT: "train", Col.LABEL: "x"},
        ]
    )
    # Bands are reported from similarity; groups come only from verified matches: c and d are similar (0.95)
    # but verification found no match, so they stay apart.
    pairs = [(0, 1, 0.995), (2, 3, 0.985), (4, 5, 0.95)]
    matches = make_matches([(0, 1, DUPLICATE), (2, 3, DUPLICATE)])
    manifest = by_path(classify(files, make_similarity(pairs), matches, CurateConfig()))

    a, a_copy = manifest["/d/train/a.jpg"], manifest["/d/val/a_copy.jpg"]
    assert Issue.IDENTICAL in a[Col.ISSUES] and Issue.SPLIT_LEAK in a[Col.ISSUES]
    assert a[Col.DUP_GROUP] == a_copy[Col.DUP_GROUP]
    assert (a[Col.ACTION], a[Col.DUPLICATE_OF]) == ("drop", "/d/val/a_copy.jpg")
    assert a_copy[Col.ACTION] == "keep" and pd.isna(a_copy[Col.DUPLICATE_OF])

    b, b_small = manifest["/d/train/b.jpg"], manifest["/d/train/b_small.jpg"]
    assert {Issue.NEAR_IDENTICAL, Issue.NEAR_DUPLICATE} <= set(b_small[Col.ISSUES])
    assert Issue.SPLIT_LEAK not in b_small[Col.ISSUES]
    assert (b_small[Col.MATCH_PATH], b_small[Col.MATCH_TRANSFORM]) == ("/d/train/b.jpg", "rotate90")
    assert (b[Col.ACTION], b_small[Col.ACTION], b_small[Col.DUPLICATE_OF]) == ("keep", "drop", "/d/train/b.jpg")

    c, d = manifest["/d/train/c.jpg"], manifest["/d/train/d.jpg"]
    assert list(c[Col.ISSUES]) == [Issue.SIMILAR] and c[Col.ACTION] == "keep"  # similar is reported, not acted on
    assert pd.isna(c[Col.DUP_GROUP]) and pd.isna(d[Col.DUP_GROUP])
    assert (c[Col.NN_PATH], c[Col.NN_SIMILARITY]) == ("/d/train/d.jpg", 0.95)


def test_exact_duplicates_label_conflict_and_corrupt():
    files = make_files(
        [
            {Col.PATH: "/d/train/cat/1.jpg", Col.SPLIT: "train", Col.LABEL: "cat", Col.SHA256: "same"},
            {Col.PATH: "/d/train/dog/1.jpg", Col.SPLIT: "train", Col.LABEL: "dog", Col.SHA256: "same"},
            {Col.PATH: "/d/unlabeled/1.jpg", Col.SPLIT: "unlabeled", Col.SHA256: "same"},
            {Col.PATH: "/d/train/cat/bad.jpg", Col.SPLIT: "train", Col.LABEL: "cat", Col.VALID: False,
             Col.ERROR: "empty file (0 bytes)", Col.WIDTH: None, Col.HEIGHT: None},
        ]
    )
    manifest = by_path(classify(files, make_similarity([]), NO_MATCHES, CurateConfig()))
    group = [manifest[p] for p in ("/d/train/cat/1.jpg", "/d/train/dog/1.jpg", "/d/unlabeled/1.jpg")]
    assert len({row[Col.DUP_GROUP] for row in group}) == 1
    for row in group:
        assert {Issue.EXACT_DUPLICATE, Issue.LABEL_CONFLICT, Issue.SPLIT_LEAK} <= set(row[Col.ISSUES])
    # Labeled beats unlabeled, then path order: cat/1.jpg is kept, and a label conflict sends it to review.
    assert [row[Col.ACTION] for row in group] == ["review", "drop", "drop"]
    assert group[1][Col.DUPLICATE_OF] == "/d/train/cat/1.jpg"
    bad = manifest["/d/train/cat/bad.jpg"]
    assert list(bad[Col.ISSUES]) == [Issue.CORRUPT] and bad[Col.ACTION] == "drop"
    assert bad[Col.REASON] == "corrupt: empty file (0 bytes)"


def test_quality_issues_and_outliers_follow_configuration():
    # Judged against the dataset: a, b and c stand far outside the others' sharpness and brightness.
    stats = [{Col.SHARPNESS: -3.0, Col.BLUR: 2.0}, {Col.BRIGHTNESS: 5.0}, {Col.BRIGHTNESS: 250.0, Col.BLACK_LEVEL: 245.0}, {}, {}]
    files = make_files([{Col.PATH: f"/d/{name}.jpg", Col.SPLIT: "train", **stats[i]} for i, name in enumerate("abcde")]
                       + [{Col.PATH: f"/d/n{i}.jpg", Col.SPLIT: "train", Col.BRIGHTNESS: 100.0 + 5 * i}
                          for i in range(8)])
    pairs = [(0, 1, 0.8), (1, 2, 0.8), (2, 3, 0.8), (3, 4, 0.3)] + [(i, i + 1, 0.8) for i in range(5, 12)]
    similarity = make_similarity(pairs)
    manifest = by_path(classify(files, similarity, NO_MATCHES, CurateConfig()))
    assert list(manifest["/d/a.jpg"][Col.ISSUES]) == [Issue.BLURRY]
    assert list(manifest["/d/b.jpg"][Col.ISSUES]) == [Issue.DARK]
    assert list(manifest["/d/c.jpg"][Col.ISSUES]) == [Issue.BRIGHT]
    assert list(manifest["/d/e.jpg"][Col.ISSUES]) == [Issue.OUTLIER]
    assert [manifest[f"/d/{n}.jpg"][Col.ACTION] for n in "abcde"] == ["drop", "drop", "drop", "keep", "review"]

    lenient = parse_config(apply_assignments({}, ["decisions.drop=[corrupt, dark]", "decisions.review=[blurry]"]))
    manifest = by_path(classify(files, similarity, NO_MATCHES, lenient))
    assert [manifest[f"/d/{n}.jpg"][Col.ACTION] for n in "abcde"] == ["review", "drop", "keep", "keep", "keep"]


def test_an_over_exposed_image_is_bright_though_its_shadows_remain():
    """Brightened threefold, most of a tile is near white but its darkest pixels are not (black level 60): not
    washed out, yet over-exposed. A naturally bright tile of a dataset whose brightness varies stays clean."""
    spread = [{Col.BRIGHTNESS: 95.0 + 5 * i, Col.BLACK_LEVEL: 10.0 + 2 * i} for i in range(12)]
    rows = [{Col.BRIGHTNESS: 235.0, Col.BLACK_LEVEL: 60.0}, {Col.BRIGHTNESS: 190.0, Col.BLACK_LEVEL: 45.0}, *spread]
    files = make_files([{Col.PATH: f"/d/{i}.jpg", Col.SPLIT: "train", **row} for i, row in enumerate(rows)])
    manifest = by_path(classify(files, make_similarity([]), NO_MATCHES, CurateConfig()))

    assert list(manifest["/d/0.jpg"][Col.ISSUES]) == [Issue.BRIGHT]
    assert all(len(row[Col.ISSUES]) == 0 for path, row in manifest.items() if path != "/d/0.jpg")
    washed_out_only = parse_config(apply_assignments({}, ["expert.quality.bright_mean_z=1000"]))
    manifest = by_path(classify(files, make_similarity([]), NO_MATCHES, washed_out_only))
    assert list(manifest["/d/0.jpg"][Col.ISSUES]) == []


def test_overlapping_tiles_of_one_split_are_all_kept_and_a_leak_is_resolved_on_the_training_side():
    """A chain of overlaps 0-1-2 in train and 2-3 across to val: no duplicate set, every train tile kept but the
    one that shows val ground (2), which yields to the val tile it overlaps."""
    splits = ["train", "train", "train", "val"]
    files = make_files([{Col.PATH: f"/d/{split}/{i}.jpg", Col.SPLIT: split, Col.LABEL: "x"}
                        for i, split in enumerate(splits)])
    matches = make_matches([(0, 1, OVERLAP), (1, 2, OVERLAP), (2, 3, OVERLAP)])
    manifest = by_path(classify(files, make_similarity([(0, 1, 0.8), (1, 2, 0.8), (2, 3, 0.8)]), matches,
                                CurateConfig()))
    rows = [manifest[f"/d/{split}/{i}.jpg"] for i, split in enumerate(splits)]
    assert all(pd.isna(row[Col.DUP_GROUP]) and Issue.OVERLAP in row[Col.ISSUES] for row in rows)
    assert [Issue.SPLIT_LEAK in row[Col.ISSUES] for row in rows] == [False, False, True, True]
    assert [row[Col.ACTION] for row in rows] == ["keep", "keep", "drop", "keep"]
    assert (rows[2][Col.REASON], rows[2][Col.LEAKS_INTO]) == ("split leak: shares ground with /d/val/3.jpg",
                                                              "/d/val/3.jpg")
    assert all(pd.isna(row[Col.LEAKS_INTO]) for row in rows[:2] + rows[3:])

    review = parse_config(apply_assignments({}, ["decisions.split_leak=review"]))
    manifest = by_path(classify(files, make_similarity([]), matches, review))
    assert [manifest[f"/d/{split}/{i}.jpg"][Col.ACTION] for i, split in enumerate(splits)] == [
        "keep", "keep", "review", "keep"]


def test_groups_do_not_depend_on_edge_order():
    forward = connected_groups(6, [0, 2, 3], [1, 3, 5]).tolist()
    backward = connected_groups(6, [5, 3, 1], [3, 2, 0]).tolist()
    assert forward == backward == [0, 0, 1, 1, -1, 1]


@pytest.mark.parametrize("n_images", [0, 3])
def test_without_similarity_nothing_is_paired(n_images):
    files = make_files([{Col.PATH: f"/d/{i}.jpg", Col.SPLIT: "train"} for i in range(max(n_images, 1))])
    similarity = Similarity(pairs=empty_pairs(), engine="test", skipped="too few", unanalysed={}, embedded=0)
    manifest = classify(files, similarity, NO_MATCHES, CurateConfig())
    assert manifest[Col.DUP_GROUP].isna().all() and (manifest[Col.ACTION] == "keep").all()


def test_smooth_or_dim_scenes_are_not_blurry_but_a_blurred_one_is(tmp_path):
    """Real images through ingest's measurements: flatness or dimness alone must not read as blur."""
    import numpy as np
    from PIL import Image, ImageFilter

    from tasks.ingest import find_files, ingest

    rng = np.random.default_rng(3)
    for seed in range(12):  # sharp-edged tiles: blocks of random grey levels
        blocks = rng.integers(0, 255, size=(24, 24), dtype=np.uint8)
        Image.fromarray(blocks).resize((96, 96), Image.NEAREST).convert("RGB").save(tmp_path / f"t{seed}.jpg")
    base = Image.open(tmp_path / "t0.jpg")
    base.point(lambda v: 110 + (v - 128) // 8).save(tmp_path / "smooth.jpg", quality=90)  # flat, low contrast
    base.point(lambda v: v // 3).save(tmp_path / "dim.jpg", quality=90)
    base.filter(ImageFilter.GaussianBlur(4)).save(tmp_path / "blurred.jpg", quality=90)
    files = ingest(find_files({"train": tmp_path}, (".jpg",)))
    manifest = by_path(classify(files, make_similarity([]), NO_MATCHES, CurateConfig()))
    flagged = {Path(path).name for path, row in manifest.items() if Issue.BLURRY in row[Col.ISSUES]}
    assert flagged == {"blurred.jpg"}


def test_a_smeared_tile_is_blurry_though_its_laplacian_barely_drops(tmp_path):
    """Motion blur smears detail along one direction only: summed over directions, the Laplacian hardly drops, so
    only the direction with the least fine detail (`fine_detail`) tells a smeared real tile from 24 sharp ones."""
    import cv2
    import numpy as np

    from tasks.ingest import find_files, ingest

    tiles = sorted(RSSCN7.glob("*/*.jpg"))[::58]
    if len(tiles) < 24:
        pytest.skip(f"RSSCN7 development data not present at {RSSCN7}")
    for tile in tiles:
        (tmp_path / tile.name).symlink_to(tile)
    smear = np.zeros((9, 9), np.float32)
    smear[4, :] = 1.0 / 9
    cv2.imwrite(str(tmp_path / "smeared.jpg"), cv2.filter2D(cv2.imread(str(tiles[3])), -1, smear),
                [cv2.IMWRITE_JPEG_QUALITY, 90])
    files = ingest(find_files({"train": tmp_path}, (".jpg",)))

    def blurry(config: CurateConfig) -> set[str]:
        manifest = by_path(classify(files, make_similarity([]), NO_MATCHES, config))
        return {Path(path).name for path, row in manifest.items() if Issue.BLURRY in row[Col.ISSUES]}

    assert blurry(CurateConfig()) == {"smeared.jpg"}
    assert blurry(parse_config(apply_assignments({}, ["expert.quality.blurry_fine_detail_z=1000"]))) == set()


def test_a_file_the_engine_could_not_read_says_so():
    files = make_files([{Col.PATH: f"/d/{i}.gif", Col.SPLIT: "train"} for i in range(2)])
    similarity = Similarity(pairs=empty_pairs(), engine="test", skipped=None, unanalysed={0: "ERROR_CORRUPT_IMAGE"}, embedded=0)
    manifest = by_path(classify(files, similarity, NO_MATCHES, CurateConfig()))
    assert manifest["/d/0.gif"][Col.REASON] == "no issue found, but similarity could not analyse it (ERROR_CORRUPT_IMAGE)"
    assert manifest["/d/1.gif"][Col.REASON] == "no issue"


@pytest.mark.parametrize("n_pairs", [0, 1, 5000])
def test_neighbours_by_row_orders_as_a_general_stable_sort(n_pairs):
    """The fast sort behind candidates, nearest neighbours and density ratios orders pairs exactly as pandas'
    stable sort on (row, -similarity, other) would, including equal similarities (0.0 and -0.0 too),
    similarities equal once rounded to float32, and missing ones."""
    import numpy as np

    from tasks.similarity import both_sides, neighbours_by_row

    rng = np.random.default_rng(11)
    a, b = rng.integers(0, 400, n_pairs), rng.integers(0, 400, n_pairs)
    close = 0.93 + rng.integers(0, 3, n_pairs) * 1e-12  # distinct float64 values, one float32 value
    similarity = np.select(
        [rng.random(n_pairs) < 0.3, rng.random(n_pairs) < 0.3, rng.random(n_pairs) < 0.05],
        [close, rng.choice([0.5, 0.9, 1.0, 0.0, -0.0], n_pairs), np.nan],
        default=rng.random(n_pairs),
    )
    pairs = pd.DataFrame({PAIR_A: np.minimum(a, b), PAIR_B: np.maximum(a, b), SIMILARITY: similarity})
    pairs = pairs[pairs[PAIR_A] != pairs[PAIR_B]].drop_duplicates([PAIR_A, PAIR_B]).sample(frac=1, random_state=1)
    expected = both_sides(pairs).sort_values(
        ["row", SIMILARITY, "other"], ascending=[True, False, True], kind="stable"
    ).reset_index(drop=True)
    ranked = neighbours_by_row(pairs)
    pd.testing.assert_frame_equal(ranked[["row", "other", SIMILARITY]], expected, check_exact=True)
    assert ranked["rank"].tolist() == expected.groupby("row").cumcount().tolist()
