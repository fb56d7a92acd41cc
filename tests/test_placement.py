"""Placement: the pairs that verified relations put over each other, and the verification round they feed."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import verify
from tasks.verify import runner
from tasks.config import VerificationConfig
from tasks.ingest import find_files, ingest
from tasks.placement import predicted_overlaps
from tasks.schema import MatchCol, PairCol
from tasks.similarity import PAIR_A, PAIR_B, SIMILARITY
from tests.test_classify import OVERLAP, make_matches
from tests.test_verify import save, textured_scene


def shift(dx: float, dy: float) -> np.ndarray:
    """The map of a tile to the one `dx`, `dy` of a tile's side further right and down."""
    return np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy], [0.0, 0.0, 1.0]])


def grid_relations(size: int, offset: int = 0) -> list:
    """A `size` x `size` grid of tiles at a quarter's overlap, rows numbered from `offset`: every pair along a row
    verified, and only the first column's pairs down."""
    cell = {(r, c): offset + r * size + c for r in range(size) for c in range(size)}
    along = [(cell[r, c], cell[r, c + 1], OVERLAP, shift(0.75, 0.0)) for r in range(size) for c in range(size - 1)]
    down = [(cell[r, 0], cell[r + 1, 0], OVERLAP, shift(0.0, 0.75)) for r in range(size - 1)]
    return along + down


def test_pairs_placed_over_each_other_are_predicted_with_their_share():
    """Rows linked only through their first column: every tile lands under the one above it (a quarter of each
    shared). Diagonal neighbours share 1/16, below the minimum; pairs already verified are not predicted again."""
    predicted = predicted_overlaps(make_matches(grid_relations(3)), min_share=0.1)
    assert sorted(zip(predicted[PairCol.ROW_A], predicted[PairCol.ROW_B])) == [(1, 4), (2, 5), (4, 7), (5, 8)]
    assert predicted["predicted_share"].to_numpy() == pytest.approx(np.full(4, 0.25))
    assert len(predicted_overlaps(make_matches(grid_relations(3)), min_share=0.05)) == 4 + 8  # and the corners


def test_files_no_relation_links_are_never_placed_together():
    """Two grids whose tiles sit at the same places in their own frames: nothing is predicted across them."""
    predicted = predicted_overlaps(make_matches(grid_relations(2) + grid_relations(2, offset=4)), min_share=0.1)
    assert all((a < 4) == (b < 4) for a, b in zip(predicted[PairCol.ROW_A], predicted[PairCol.ROW_B]))
    assert len(predicted) == 2
    assert predicted_overlaps(make_matches([]), min_share=0.1).empty


def test_verification_checks_what_accepted_pairs_place_over_each_other(tmp_path: Path, monkeypatch):
    """Three windows of one scene, each shifted by a third: similarity proposes only the neighbours, the second
    round verifies the outer two, which share a third of each."""
    scene = textured_scene(seed=4, size=500)
    for index in range(3):
        save(tmp_path / f"window{index}.jpg", scene[0:300, 100 * index: 100 * index + 300])
    files = ingest(find_files({"train": tmp_path}, (".jpg",)))
    neighbours = pd.DataFrame({PAIR_A: [0, 1], PAIR_B: [1, 2], SIMILARITY: [0.5, 0.5]})
    monkeypatch.setattr(runner, "select_candidates",
                        lambda files, pairs, settings, cache_dir=None: neighbours.assign(colour_similarity=0.5))

    matched = verify.verify_candidates(files, neighbours, VerificationConfig())

    assert sorted(zip(matched[PAIR_A], matched[PAIR_B])) == [(0, 1), (0, 2), (1, 2)]
    outer = matched[(matched[PAIR_A] == 0) & (matched[PAIR_B] == 2)].iloc[0]
    assert (outer[MatchCol.SHARE_A], outer[MatchCol.SHARE_B]) == pytest.approx((1 / 3, 1 / 3), abs=0.03)
