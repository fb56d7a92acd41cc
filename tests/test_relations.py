"""Relations and the geometry of shared ground: shares from maps, relations from shares, pairs as stored."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tasks.geometry import shared_regions, shares, to_unit_map
from tasks.relations import build_relations, pairs_with_paths
from tasks.schema import PAIRS_COLUMNS, PAIRS_SCHEMA, Col, PairCol, pairs_to_table
from tests.test_classify import make_files, make_matches

SHIFT_RIGHT_QUARTER = np.array([[1.0, 0.0, -0.25], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # b starts a quarter across a
MIRROR = np.array([[-1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
ZOOM_2X = np.diag([2.0, 2.0, 1.0])  # b shows a's top-left quarter twice as large


@pytest.mark.parametrize(("a_to_b", "expected"), [
    (SHIFT_RIGHT_QUARTER, (0.75, 0.75)),
    (MIRROR, (1.0, 1.0)),
    (ZOOM_2X, (0.25, 1.0)),
    (ZOOM_2X @ MIRROR, (0.25, 1.0)),
    (np.array([[1.0, 0.0, -2.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), (0.0, 0.0)),  # side by side, nothing shared
])
def test_shares_are_the_areas_of_the_shared_region_in_each_unit_square(a_to_b, expected):
    assert shares(a_to_b) == pytest.approx(expected, abs=1e-6)


def test_shared_regions_map_onto_each_other():
    region_a, region_b = shared_regions(SHIFT_RIGHT_QUARTER)
    assert sorted(map(tuple, np.round(region_a, 6))) == [(0.25, 0.0), (0.25, 1.0), (1.0, 0.0), (1.0, 1.0)]
    assert sorted(map(tuple, np.round(region_b, 6))) == [(0.0, 0.0), (0.0, 1.0), (0.75, 0.0), (0.75, 1.0)]


def test_a_pixel_map_becomes_a_unit_map_whatever_the_sizes():
    """b (50 x 50 px) is a's (200 x 100 px) right half at half size: a's x = 100 + 2 x."""
    pixel_map = np.array([[0.5, 0.0, -50.0], [0.0, 0.5, 0.0]])
    assert shares(to_unit_map(pixel_map, (200, 100), (50, 50))) == pytest.approx((0.5, 1.0))


def test_relations_record_each_pair_once_with_its_relation_and_splits():
    files = make_files([
        {Col.PATH: "/d/train/a.jpg", Col.SPLIT: "train", Col.SHA256: "same"},
        {Col.PATH: "/d/val/a.jpg", Col.SPLIT: "val", Col.SHA256: "same"},
        {Col.PATH: "/d/train/a2.jpg", Col.SPLIT: "train", Col.SHA256: "same"},
        {Col.PATH: "/d/train/b.jpg", Col.SPLIT: "train"},
        {Col.PATH: "/d/train/c.jpg", Col.SPLIT: "train"},
        {Col.PATH: "/d/train/bad.jpg", Col.SPLIT: "train", Col.SHA256: "same", Col.VALID: False},
    ])
    matches = make_matches([(0, 3, "overlap"), (1, 2, "duplicate"), (3, 4, "duplicate")])
    matches.loc[2, ["share_a", "share_b"]] = (0.8, 0.74)  # a crop keeping 74 % of c: an overlap at 0.75
    relations = build_relations(files, matches, duplicate_share=0.75)
    by_pair = relations.set_index([PairCol.ROW_A, PairCol.ROW_B])
    # Same bytes: a star around the first readable file; the verified pair of identical files 1-2 is left out.
    # 0 overlaps 3, and 3 is c's copy (an identity map, whatever its recorded shares): 0 overlaps 4 as it does 3.
    assert list(by_pair.index) == [(0, 1), (0, 2), (0, 3), (0, 4), (3, 4)]
    assert by_pair[PairCol.RELATION].tolist() == ["exact", "exact", "overlap", "overlap", "overlap"]
    assert by_pair[PairCol.EVIDENCE].tolist() == ["sha256", "sha256", "keypoints", "composition", "keypoints"]
    assert by_pair.loc[(0, 1), PairCol.CROSS_SPLIT] and not by_pair.loc[(3, 4), PairCol.CROSS_SPLIT]
    assert by_pair.loc[(0, 4), [PairCol.SHARE_A, PairCol.SHARE_B]].tolist() == pytest.approx([0.3, 0.3])
    assert build_relations(files, matches, duplicate_share=0.7).iloc[4][PairCol.RELATION] == "duplicate"


def test_ground_too_thin_to_verify_is_composed_through_the_tile_beside_both():
    """A 3 x 3 grid of tiles at a quarter's overlap, with only side neighbours verified: each diagonal pair shares
    a corner of 1/16 of each tile, placed by composing the maps through either side neighbour. Tiles two apart
    share nothing and get no relation."""
    cells = [(row, column) for row in range(3) for column in range(3)]
    files = make_files([{Col.PATH: f"/d/r{r}c{c}.jpg", Col.SPLIT: "train"} for r, c in cells])

    def shift(dx: float, dy: float) -> np.ndarray:
        return np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy], [0.0, 0.0, 1.0]])

    sides = [(cells.index((r, c)), cells.index((r + dr, c + dc)), "overlap", shift(0.75 * dc, 0.75 * dr))
             for r, c in cells for dr, dc in ((0, 1), (1, 0)) if r + dr < 3 and c + dc < 3]
    relations = build_relations(files, make_matches(sides), duplicate_share=0.75)
    composed = relations[relations[PairCol.EVIDENCE] == "composition"]
    expected = {(cells.index((r, c)), cells.index((r + 1, c + dc))) for r in range(2) for c in range(3)
                for dc in (-1, 1) if 0 <= c + dc < 3}
    assert {tuple(sorted(pair)) for pair in zip(composed[PairCol.ROW_A], composed[PairCol.ROW_B])} == {
        tuple(sorted(pair)) for pair in expected}
    assert composed[[PairCol.SHARE_A, PairCol.SHARE_B]].to_numpy() == pytest.approx(np.full((8, 2), 1 / 16))
    assert set(composed[PairCol.TRANSFORM]) == {"shift"} and set(composed[PairCol.RELATION]) == {"overlap"}


def test_pairs_round_trip_through_parquet_with_their_maps(tmp_path):
    files = make_files([{Col.PATH: f"/d/{i}.jpg", Col.SPLIT: "train"} for i in range(3)])
    matches = make_matches([(0, 1, "overlap"), (1, 2, "duplicate")])
    matches.at[0, "a_to_b"] = SHIFT_RIGHT_QUARTER.ravel()
    relations = build_relations(files, matches, duplicate_share=0.75)
    pairs = pairs_with_paths(relations, files.set_index(Col.ROW)[Col.PATH])
    assert tuple(pairs.columns) == PAIRS_COLUMNS
    pq.write_table(pairs_to_table(pairs), tmp_path / "pairs.parquet")
    table = pq.read_table(tmp_path / "pairs.parquet")
    assert table.schema.equals(PAIRS_SCHEMA)
    back = table.to_pandas()
    assert back[[PairCol.PATH_A, PairCol.PATH_B]].values.tolist() == [
        ["/d/0.jpg", "/d/1.jpg"], ["/d/0.jpg", "/d/2.jpg"], ["/d/1.jpg", "/d/2.jpg"]]  # 0-2 composed through 1
    assert np.allclose(np.asarray(back.loc[0, PairCol.A_TO_B]).reshape(3, 3), SHIFT_RIGHT_QUARTER)
    empty = pairs_to_table(pairs.iloc[0:0])
    assert empty.num_rows == 0 and empty.schema.equals(PAIRS_SCHEMA)


def test_no_pairs_make_an_empty_frame_of_the_right_columns():
    files = make_files([{Col.PATH: "/d/0.jpg", Col.SPLIT: "train"}])
    relations = build_relations(files, make_matches([]), duplicate_share=0.75)
    assert relations.empty and PairCol.RELATION in relations.columns
    assert pd.api.types.is_bool_dtype(relations[PairCol.CROSS_SPLIT]) or relations[PairCol.CROSS_SPLIT].empty
