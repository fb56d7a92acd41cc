"""The keep policy on hand-made rows and relations: one file per duplicate set, overlaps kept, leaks resolved on
the training side, quality judged once per picture."""

import numpy as np
import pandas as pd

from tasks.config import CurateConfig, apply_assignments, parse_config
from tasks.schema import Action, Col, Issue
from tests.test_classify import DUPLICATE, OVERLAP, by_path, classify, make_files, make_matches, make_similarity


def curate(rows: list[dict], matches: list[tuple[int, int, str]], settings: list[str] | None = None
           ) -> dict[str, pd.Series]:
    config = parse_config(apply_assignments({}, settings or [])) if settings else CurateConfig()
    files = make_files([{Col.LABEL: "x", **row} for row in rows])
    return by_path(classify(files, make_similarity([]), make_matches(matches), config))


def test_a_chain_of_copies_keeps_one_file_even_where_verification_compared_only_neighbours():
    """a ~ b and b ~ c were verified, a ~ c was not: all three are one picture and one is kept."""
    rows = [{Col.PATH: f"/d/train/{name}.jpg", Col.SPLIT: "train", Col.WIDTH: width}
            for name, width in (("a", 100), ("b", 90), ("c", 80))]
    manifest = curate(rows, [(0, 1, DUPLICATE), (1, 2, DUPLICATE)])
    assert [manifest[f"/d/train/{n}.jpg"][Col.ACTION] for n in "abc"] == ["keep", "drop", "drop"]
    assert manifest["/d/train/c.jpg"][Col.DUPLICATE_OF] == "/d/train/a.jpg"
    assert manifest["/d/train/a.jpg"][Col.REASON].startswith("kept copy of duplicate set")


def test_overlaps_do_not_join_duplicate_sets():
    """Two copies of one tile, and a neighbour overlapping one of them: the copies are one set, the neighbour stays
    on its own and is kept."""
    rows = [{Col.PATH: f"/d/train/{name}.jpg", Col.SPLIT: "train"} for name in ("a_tile", "b_copy", "neighbour")]
    manifest = curate(rows, [(0, 1, DUPLICATE), (1, 2, OVERLAP)])
    assert [manifest[f"/d/train/{n}.jpg"][Col.ACTION] for n in ("a_tile", "b_copy", "neighbour")] == [
        "keep", "drop", "keep"]
    assert pd.isna(manifest["/d/train/neighbour.jpg"][Col.DUP_GROUP])
    assert Issue.LABEL_CONFLICT not in manifest["/d/train/neighbour.jpg"][Col.ISSUES]


def test_a_leak_into_a_dropped_evaluation_copy_yields_to_the_kept_copy_and_none_without_one():
    """train/t overlaps val/v2, a copy of val/v (kept): the ground is still in val, so t leaks into v. train/u
    overlaps val/w, which is dropped as blurry: nothing of that ground is left in val, so u is kept."""
    blurry = {Col.SHARPNESS: -3.0, Col.BLUR: 2.0}
    rows = [
        {Col.PATH: "/d/val/v.jpg", Col.SPLIT: "val"},
        {Col.PATH: "/d/val/v2.jpg", Col.SPLIT: "val", Col.WIDTH: 50},
        {Col.PATH: "/d/train/t.jpg", Col.SPLIT: "train"},
        {Col.PATH: "/d/val/w.jpg", Col.SPLIT: "val", **blurry},
        {Col.PATH: "/d/train/u.jpg", Col.SPLIT: "train"},
    ] + [{Col.PATH: f"/d/train/n{i}.jpg", Col.SPLIT: "train"} for i in range(8)]
    manifest = curate(rows, [(0, 1, DUPLICATE), (1, 2, OVERLAP), (3, 4, OVERLAP)])
    t, u = manifest["/d/train/t.jpg"], manifest["/d/train/u.jpg"]
    assert (t[Col.ACTION], t[Col.LEAKS_INTO]) == ("drop", "/d/val/v.jpg")
    assert manifest["/d/val/w.jpg"][Col.ACTION] == "drop" and u[Col.ACTION] == "keep" and pd.isna(u[Col.LEAKS_INTO])
    assert Issue.SPLIT_LEAK in u[Col.ISSUES]  # the relation still crosses splits: reported


def test_only_evaluation_splits_take_leaks_and_the_most_preferred_one_is_named():
    """Overlaps between two training splits (train, unlabeled) are reported, not resolved; a training file that
    shares ground with test and val files names the test file (first in decisions.evaluation_splits)."""
    rows = [
        {Col.PATH: "/d/train/a.jpg", Col.SPLIT: "train"},
        {Col.PATH: "/d/unlabeled/b.jpg", Col.SPLIT: "unlabeled", Col.LABEL: None},
        {Col.PATH: "/d/val/c.jpg", Col.SPLIT: "val"},
        {Col.PATH: "/d/test/d.jpg", Col.SPLIT: "test"},
    ]
    # c is the tile right of b, as b is a's; d lies below b and a third across: out of a's reach either way.
    below = np.array([[1.0, 0.0, -0.35], [0.0, 1.0, -0.7], [0.0, 0.0, 1.0]])
    manifest = curate(rows, [(0, 1, OVERLAP), (1, 2, OVERLAP), (1, 3, OVERLAP, below)])
    a, b = manifest["/d/train/a.jpg"], manifest["/d/unlabeled/b.jpg"]
    assert a[Col.ACTION] == "keep" and Issue.SPLIT_LEAK in a[Col.ISSUES]
    assert (b[Col.ACTION], b[Col.LEAKS_INTO]) == ("drop", "/d/test/d.jpg")
    assert [manifest[p][Col.ACTION] for p in ("/d/val/c.jpg", "/d/test/d.jpg")] == ["keep", "keep"]


def test_a_duplicate_across_splits_is_kept_in_the_evaluation_split_not_dropped_as_a_leak_there():
    rows = [{Col.PATH: "/d/train/a.jpg", Col.SPLIT: "train"}, {Col.PATH: "/d/val/a.jpg", Col.SPLIT: "val"}]
    manifest = curate(rows, [(0, 1, DUPLICATE)])
    train, val = manifest["/d/train/a.jpg"], manifest["/d/val/a.jpg"]
    assert (train[Col.ACTION], train[Col.DUPLICATE_OF], val[Col.ACTION]) == ("drop", "/d/val/a.jpg", "keep")
    assert train[Col.REASON] == "duplicate of /d/val/a.jpg"


def test_duplicate_share_decides_whether_a_crop_is_a_copy_or_a_distinct_sample():
    """A crop keeping 30 % of the original (made-up overlap shares): kept beside it by default, dropped when
    the user counts such crops as copies."""
    rows = [{Col.PATH: "/d/train/original.jpg", Col.SPLIT: "train"},
            {Col.PATH: "/d/train/crop.jpg", Col.SPLIT: "train", Col.WIDTH: 50}]
    assert curate(rows, [(0, 1, OVERLAP)])["/d/train/crop.jpg"][Col.ACTION] == "keep"
    lenient = curate(rows, [(0, 1, OVERLAP)], ["decisions.duplicate_share=0.3"])
    assert (lenient["/d/train/crop.jpg"][Col.ACTION], lenient["/d/train/crop.jpg"][Col.DUPLICATE_OF]) == (
        "drop", "/d/train/original.jpg")


def test_many_copies_of_one_dark_picture_do_not_make_the_other_pictures_bright():
    """Twenty copies of one dark scene and ten ordinary ones: counted once, the dark scene is the odd one out;
    counted twenty times, it would be the norm and the ordinary scenes would look over-exposed."""
    rows = [{Col.PATH: f"/d/train/dark{i}.jpg", Col.SPLIT: "train", Col.BRIGHTNESS: 30.0, Col.SHA256: "dark"}
            for i in range(20)]
    rows += [{Col.PATH: f"/d/train/n{i}.jpg", Col.SPLIT: "train", Col.BRIGHTNESS: 120.0 + 3 * i}
             for i in range(10)]
    manifest = curate(rows, [])
    flagged = {path for path, row in manifest.items() if len(row[Col.ISSUES]) > 1 or (
        len(row[Col.ISSUES]) == 1 and Issue.EXACT_DUPLICATE not in row[Col.ISSUES])}
    assert not any(path.startswith("/d/train/n") for path in flagged), flagged


def test_an_evaluation_file_in_review_holds_its_ground_only_once_a_reviewer_keeps_it():
    """val/odd is sent to review (an outlier): until a person keeps it, the curated val split does not hold it, so
    the train tile overlapping it stays. Kept by a reviewer, it does, and the train tile yields to it."""
    rows = [{Col.PATH: "/d/val/odd.jpg", Col.SPLIT: "val", Col.BRIGHTNESS: 120.0},
            {Col.PATH: "/d/train/t.jpg", Col.SPLIT: "train", Col.BRIGHTNESS: 120.0}]
    rows += [{Col.PATH: f"/d/train/n{i}.jpg", Col.SPLIT: "train", Col.BRIGHTNESS: 100.0 + 5 * i} for i in range(8)]
    files = make_files([{Col.LABEL: "x", **row} for row in rows])
    similarity = make_similarity([(0, 1, 0.3)] + [(i, i + 1, 0.8) for i in range(1, 9)])  # odd is isolated
    matches = make_matches([(0, 1, OVERLAP)])
    manifest = by_path(classify(files, similarity, matches, CurateConfig()))
    assert manifest["/d/val/odd.jpg"][Col.ACTION] == "review"
    assert manifest["/d/train/t.jpg"][Col.ACTION] == "keep" and pd.isna(manifest["/d/train/t.jpg"][Col.LEAKS_INTO])

    reviewed = by_path(classify(files, similarity, matches, CurateConfig(), {"/d/val/odd.jpg": Action.KEEP}))
    assert reviewed["/d/val/odd.jpg"][Col.ACTION] == "keep"
    assert (reviewed["/d/train/t.jpg"][Col.ACTION], reviewed["/d/train/t.jpg"][Col.LEAKS_INTO]) == (
        "drop", "/d/val/odd.jpg")
