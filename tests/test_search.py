"""The neighbour search (`tasks.similarity.top_k_similar`, `nearest_neighbours`): exact in any block size, and
the same neighbours fastdup's own search finds over the same vectors."""

import numpy as np
import pandas as pd
import pytest

from tasks.similarity import SIMILARITY, nearest_neighbours, top_k_similar


def brute_force(queries: np.ndarray, items: np.ndarray, k: int, same_set: bool, windows: int) -> np.ndarray:
    scores = (queries @ items.T).reshape(len(queries), -1, windows).max(axis=2)
    if same_set:
        np.fill_diagonal(scores, -np.inf)
    return scores


@pytest.mark.parametrize("same_set", [True, False])
@pytest.mark.parametrize("windows", [1, 3])
@pytest.mark.parametrize("count", [23, 400])
def test_blocked_search_is_exact(same_set: bool, windows: int, count: int) -> None:
    """Exact in small blocks, where most scores of a block enter some row's best, and in many blocks, where
    after the first few only a handful of a block's scores can enter (picked out without a partition)."""
    rng = np.random.default_rng(4)
    queries = rng.random((count, 6), dtype=np.float32)
    items = rng.random((count * windows, 6), dtype=np.float32)
    scores = brute_force(queries, items, 4, same_set, windows)

    found, values = top_k_similar(queries, items, 4, same_set=same_set, windows=windows,
                                  queries_per_block=5, items_per_block=4 * windows)

    assert found.shape == values.shape == (count, 4)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :4]
    assert (found == expected).all()
    assert np.allclose(values, np.take_along_axis(scores, expected, axis=1), atol=1e-6)


def test_symmetric_search_is_only_within_one_set() -> None:
    vectors = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="same_set=True"):
        top_k_similar(vectors, vectors, 1, same_set=False, symmetric=True)


@pytest.mark.parametrize("block", [3, 5, 40])
def test_symmetric_search_scores_each_pair_of_blocks_once_and_stays_exact(block: int) -> None:
    """Within one set of vectors, and for structure signatures under their flips and turns (i's best variant
    against j scores what j's does against i), the symmetric search finds what the full one finds."""
    from tasks.imagestats import DIHEDRAL_VARIANTS, dihedral_variants

    rng = np.random.default_rng(7)
    vectors = rng.random((23, 6), dtype=np.float32)
    expected = np.argsort(-brute_force(vectors, vectors, 4, True, 1), axis=1, kind="stable")[:, :4]
    found, _ = top_k_similar(vectors, vectors, 4, same_set=True, symmetric=True,
                             queries_per_block=block, items_per_block=block)
    assert (found == expected).all()

    structures = rng.integers(-127, 128, (23, 64)).astype(np.int8)
    queries, variants = structures / np.float32(127.0), dihedral_variants(structures)
    settings = dict(same_set=True, windows=DIHEDRAL_VARIANTS, scale=1.0 / 127.0, queries_per_block=block,
                    items_per_block=block * DIHEDRAL_VARIANTS)
    full = top_k_similar(queries, variants, 3, **settings)
    symmetric = top_k_similar(queries, variants, 3, symmetric=True, **settings)
    assert (symmetric[0] == full[0]).all()
    assert np.allclose(symmetric[1], full[1], atol=1e-5)


def test_k_is_capped_and_compact_items_are_scaled() -> None:
    items = np.array([[255, 0], [0, 255], [128, 128]], np.uint8)
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)

    found, values = top_k_similar(queries, items, 10, same_set=True, scale=1.0 / 255.0)

    assert found.shape == (3, 2)  # each query may choose among the other two items only
    assert list(found[0]) == [2, 1] and values[0, 0] == pytest.approx(128 / 255)


def test_nearest_neighbours_match_fastdups_own_search(tmp_path) -> None:
    """fastdup's search over supplied vectors, as Curate used it before, finds the same k neighbours."""
    import fastdup

    from tasks.similarity import _output_to, _positions

    vectors = np.random.default_rng(8).normal(size=(300, 64)).astype(np.float32)
    names = pd.DataFrame({"filename": [str(tmp_path / "v" / f"{i:09d}.jpg") for i in range(len(vectors))]})
    with _output_to(tmp_path / "fastdup.log"):
        dataset = fastdup.create(work_dir=str(tmp_path / "fastdup"))
        assert dataset.run(overwrite=True, run_sentry=False, annotations=names, embeddings=vectors,
                           nearest_neighbors_k=5, threshold=-1.0, verbose=False) == 0
        edges = dataset.similarity()
    theirs = pd.DataFrame({"source": _positions(edges["filename_from"]), "target": _positions(edges["filename_to"]),
                           SIMILARITY: edges["distance"]})

    ours = nearest_neighbours(vectors, 5)

    assert len(ours) == 300 * 5
    merged = ours.merge(theirs, on=["source", "target"], how="outer", suffixes=("_ours", "_theirs"), indicator=True)
    assert (merged["_merge"] == "both").mean() > 0.99  # near-ties may be ordered differently at the k-th place
    both = merged[merged["_merge"] == "both"]
    assert np.allclose(both["similarity_ours"], both["similarity_theirs"], atol=1e-4)


def test_overwrite_normalises_in_place_and_finds_the_same_neighbours() -> None:
    vectors = np.random.default_rng(2).normal(size=(50, 8)).astype(np.float32)
    scratch = vectors.copy()

    found = nearest_neighbours(scratch, 3, overwrite=True)

    pd.testing.assert_frame_equal(found, nearest_neighbours(vectors, 3))
    assert np.allclose(np.linalg.norm(scratch, axis=1), 1.0)
