"""The neighbour search (`tasks.similarity.top_k_similar`, `nearest_neighbours`): exact in any block size, and
the same neighbours fastdup's own search finds over the same vectors; a search that reuses the last one
(`top_k_reusing`) finds what a full search finds and searches only what changed."""

import numpy as np
import pandas as pd
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import similarity
from tasks.cache import LastSearch
from tasks.similarity import SIMILARITY, nearest_neighbours, top_k_reusing, top_k_similar


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


@pytest.mark.slow
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

    ours = nearest_neighbours(vectors.copy, 5)

    assert len(ours) == 300 * 5
    merged = ours.merge(theirs, on=["source", "target"], how="outer", suffixes=("_ours", "_theirs"), indicator=True)
    assert (merged["_merge"] == "both").mean() > 0.99  # near-ties may be ordered differently at the k-th place
    both = merged[merged["_merge"] == "both"]
    assert np.allclose(both["similarity_ours"], both["similarity_theirs"], atol=1e-4)


def test_the_given_vectors_are_normalised_in_place_with_the_same_neighbours() -> None:
    vectors = np.random.default_rng(2).normal(size=(50, 8)).astype(np.float32)
    scratch = vectors.copy()

    found = nearest_neighbours(lambda: scratch, 3)

    pd.testing.assert_frame_equal(found, nearest_neighbours(lambda: vectors.astype(np.float64), 3))
    assert np.allclose(np.linalg.norm(scratch, axis=1), 1.0)


def assert_top_k(found: np.ndarray, scores: np.ndarray, full_scores: np.ndarray, k: int) -> None:
    """`found` and `scores` are a right top-k of `full_scores` (rows: queries, own item at -inf): each row's
    items are distinct, not the row itself, score what is reported, and those scores are the k best. Items that
    tie may be any of them."""
    expected = -np.sort(-full_scores, axis=1)[:, :k]
    assert found.shape == scores.shape == expected.shape
    assert np.allclose(scores, expected, atol=1e-5)
    assert np.allclose(np.take_along_axis(full_scores, found, axis=1), scores, atol=1e-5)
    assert all(len(set(row)) == len(row) for row in found.tolist())


@settings(max_examples=60, deadline=None)
@given(
    before=st.integers(0, 30), removed=st.sets(st.integers(0, 29)), added=st.integers(0, 12), copies=st.integers(0, 3),
    k=st.integers(1, 6), windows=st.sampled_from([1, 3]), seed=st.integers(0, 2**16),
)
def test_a_search_reusing_the_last_finds_what_a_full_search_finds(
    tmp_path_factory, before, removed, added, copies, k, windows, seed
) -> None:
    """Whatever was removed, added, copied (the same contents twice) or moved since the last search."""
    rng = np.random.default_rng(seed)
    last = LastSearch(tmp_path_factory.mktemp("search") / "last.npz")
    contents = {f"c{i}": vector for i, vector in enumerate(rng.random((before + added, 5 * windows), np.float32))}

    def search(keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = np.array([contents[key] for key in keys], np.float32).reshape(len(keys), windows, 5)
        queries, items = rows[:, 0], rows.reshape(-1, 5)
        found, scores = top_k_reusing(last, keys, lambda: (queries, items), k, windows=windows,
                                      symmetric=windows == 1)
        return found, scores, brute_force(queries, items, k, True, windows) if keys else np.empty((0, 0))

    first = [f"c{i}" for i in range(before)]
    search(first)
    kept = [key for i, key in enumerate(first) if i not in removed]
    now = kept + [f"c{before + i}" for i in range(added)] + kept[:copies]  # the same contents twice
    now = [now[i] for i in rng.permutation(len(now))]
    found, scores, full = search(now)
    assert_top_k(found, scores, full, max(0, min(k, len(now) - 1)))


def test_a_re_run_searches_only_what_changed(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.random((41, 8), dtype=np.float32)
    keys = [f"c{i}" for i in range(41)]
    last = LastSearch(tmp_path / "last.npz")
    searched: list[tuple[int, int]] = []
    full_search = similarity.top_k_similar
    monkeypatch.setattr(similarity, "top_k_similar",
                        lambda queries, items, *a, **kw: searched.append((len(queries), len(items)))
                        or full_search(queries, items, *a, **kw))
    given_inputs: list[int] = []

    def run(count: int) -> tuple[np.ndarray, np.ndarray]:
        def inputs() -> tuple[np.ndarray, np.ndarray]:
            given_inputs.append(count)
            return vectors[:count], vectors[:count]

        return top_k_reusing(last, keys[:count], inputs, 4, symmetric=True)

    cold = run(40)
    assert searched == [(40, 40)]
    assert all((a == b).all() for a, b in zip(run(40), cold)), "unchanged: the same answer"
    assert searched == [(40, 40)] and given_inputs == [40], "and nothing searched"
    found, scores = run(41)
    assert searched[1:] == [(1, 41), (40, 1)], "the new image against all, the others against it alone"
    assert_top_k(found, scores, brute_force(vectors, vectors, 4, True, 1), 4)


def test_an_unreadable_last_search_is_searched_again(tmp_path) -> None:
    last = LastSearch(tmp_path / "last.npz")
    last.path.write_bytes(b"PK\x03\x04 torn")
    assert last.get() is None
    vectors = np.eye(3, dtype=np.float32)
    found, _ = top_k_reusing(last, ["a", "b", "c"], lambda: (vectors, vectors), 1, symmetric=True)
    assert found.shape == (3, 1) and last.get()[0].tolist() == ["a", "b", "c"]
