"""decisions.split_leak: reassign. Sets of files that share ground go wholly to one split; nothing is dropped for
leakage but what shares ground with a fixed split."""

import numpy as np
import pandas as pd

from tasks.config import apply_assignments, parse_config
from tasks.schema import Col
from tests.test_classify import OVERLAP, by_path, classify_with_pairs, make_files, make_matches, make_similarity

REASSIGN = ["decisions.split_leak=reassign"]


def curate(rows: list[dict], matches: list[tuple], settings: list[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    config = parse_config(apply_assignments({}, [*REASSIGN, *settings]))
    files = make_files([{Col.LABEL: "x", **row} for row in rows])
    manifest, pairs = classify_with_pairs(files, make_similarity([]), make_matches(matches), config)
    return manifest.set_index(Col.PATH, drop=False), pairs


def below(rows: float = 0.7) -> np.ndarray:
    """The map to the tile below, sharing a third of each (tiles beside share 30 % with the default map)."""
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -rows], [0.0, 0.0, 1.0]])


def test_a_set_of_shared_ground_goes_wholly_to_the_split_holding_most_of_it():
    rows = [{Col.PATH: "/d/train/a.jpg", Col.SPLIT: "train"}, {Col.PATH: "/d/train/b.jpg", Col.SPLIT: "train"},
            {Col.PATH: "/d/val/c.jpg", Col.SPLIT: "val"}]
    rows += [{Col.PATH: f"/d/{split}/n{i}.jpg", Col.SPLIT: split} for i, split in enumerate(["train"] * 30 + ["val"] * 8)]
    manifest, pairs = curate(rows, [(0, 1, OVERLAP), (1, 2, OVERLAP)])
    assert list(manifest.loc[["/d/train/a.jpg", "/d/train/b.jpg", "/d/val/c.jpg"], Col.CURATED_SPLIT]) == ["train"] * 3
    assert (manifest[Col.ACTION] == "keep").all() and manifest[Col.LEAKS_INTO].isna().all()
    assert manifest.loc["/d/val/c.jpg", Col.SPLIT] == "val"  # where it came from stays recorded
    split = manifest[Col.CURATED_SPLIT]
    assert (split.reindex(pairs["path_a"]).to_numpy() == split.reindex(pairs["path_b"]).to_numpy()).all()


def test_files_sharing_ground_with_a_fixed_split_yield_to_it_whatever_their_split():
    rows = [{Col.PATH: "/d/test/t.jpg", Col.SPLIT: "test"}, {Col.PATH: "/d/train/a.jpg", Col.SPLIT: "train"},
            {Col.PATH: "/d/val/v.jpg", Col.SPLIT: "val"}]
    manifest, _ = curate(rows, [(0, 1, OVERLAP), (0, 2, OVERLAP, below())])
    assert manifest.loc["/d/test/t.jpg", [Col.ACTION, Col.CURATED_SPLIT]].tolist() == ["keep", "test"]
    for path in ("/d/train/a.jpg", "/d/val/v.jpg"):
        assert manifest.loc[path, [Col.ACTION, Col.LEAKS_INTO]].tolist() == ["drop", "/d/test/t.jpg"]
    unfixed, _ = curate(rows, [(0, 1, OVERLAP), (0, 2, OVERLAP, below())], ["decisions.fixed_splits=[]"])
    assert (unfixed[Col.ACTION] == "keep").all() and unfixed[Col.CURATED_SPLIT].nunique() == 1


def test_labeled_and_unlabeled_files_keep_their_kind_and_their_shared_ground_stays_on_the_training_side():
    """A val tile overlaps an unlabeled tile, which cannot enter a labeled split: the val tile goes to train
    (a training split, like unlabeled), and the unlabeled tile stays where it was."""
    rows = [{Col.PATH: "/d/val/v.jpg", Col.SPLIT: "val"},
            {Col.PATH: "/d/unlabeled/u.jpg", Col.SPLIT: "unlabeled", Col.LABEL: None}]
    rows += [{Col.PATH: f"/d/{split}/n{i}.jpg", Col.SPLIT: split} for i, split in enumerate(["train"] * 60 + ["val"] * 20)]
    manifest, _ = curate(rows, [(0, 1, OVERLAP)])
    assert manifest.loc["/d/val/v.jpg", Col.CURATED_SPLIT] == "train"
    assert manifest.loc["/d/unlabeled/u.jpg", Col.CURATED_SPLIT] == "unlabeled"
    assert (manifest[Col.ACTION] == "keep").all()


def test_sets_are_moved_to_keep_split_sizes_near_the_input_and_as_few_as_possible():
    """Ten sets of one train and one val tile: each would go to train by default (a tie, broken by name), emptying
    val of a third of its tiles. Balancing sends enough of them to val to keep it within 3 % of its size, and no
    more."""
    rows = [{Col.PATH: f"/d/train/t{i}.jpg", Col.SPLIT: "train"} for i in range(70)]
    rows += [{Col.PATH: f"/d/val/v{i}.jpg", Col.SPLIT: "val"} for i in range(30)]
    manifest, pairs = curate(rows, [(i, 70 + i, OVERLAP) for i in range(10)])
    sizes = manifest[Col.CURATED_SPLIT].value_counts()
    assert abs(sizes["val"] - 30) <= 0.03 * 30 and abs(sizes["train"] - 70) <= 0.03 * 70
    moved = (manifest[Col.SPLIT] != manifest[Col.CURATED_SPLIT]).sum()
    assert moved == 10  # each set moves one file, whichever way
    split = manifest[Col.CURATED_SPLIT]
    assert (split.reindex(pairs["path_a"]).to_numpy() == split.reindex(pairs["path_b"]).to_numpy()).all()


def test_class_shares_are_kept_too():
    """Val holds 5 cats and 5 dogs; five cat sets (a train cat and a val cat each) span train and val. Sent to train,
    they would leave val with no cats. Each set moved to val brings two cats: two or three of them bring val
    closest to its size and class counts (4 or 6 cats beside 5 dogs; the sets allow no closer)."""
    rows = [{Col.PATH: f"/d/train/c{i}.jpg", Col.SPLIT: "train", Col.LABEL: "cat"} for i in range(40)]
    rows += [{Col.PATH: f"/d/train/d{i}.jpg", Col.SPLIT: "train", Col.LABEL: "dog"} for i in range(40)]
    rows += [{Col.PATH: f"/d/val/c{i}.jpg", Col.SPLIT: "val", Col.LABEL: "cat"} for i in range(5)]
    rows += [{Col.PATH: f"/d/val/d{i}.jpg", Col.SPLIT: "val", Col.LABEL: "dog"} for i in range(5)]
    files_per_set = [(i, 80 + i, OVERLAP) for i in range(5)]
    manifest, _ = curate(rows, files_per_set)
    val = manifest[manifest[Col.CURATED_SPLIT] == "val"]
    assert ((val[Col.LABEL] == "cat").sum(), (val[Col.LABEL] == "dog").sum()) in {(4, 5), (6, 5)}
    assert by_path(manifest.reset_index(drop=True))["/d/val/c0.jpg"][Col.ACTION] == "keep"
