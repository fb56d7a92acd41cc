"""Incremental re-runs: statistics, embeddings and verification results are cached by content, so only new or
changed images are decoded and embedded, and only new pairs verified."""

import shutil
from collections import Counter

import numpy as np
import pytest
import pandas as pd

from tasks.cache import KEYS_FILE, VECTORS_FILE, EmbeddingCache
from tasks.chunks import run_here
from tasks.config import CurateConfig
from tasks.ingest import find_files, ingest
from tasks.similarity import PAIR_A, PAIR_B, compute_similarity

SIMILARITY_CONFIG = CurateConfig().expert.similarity


def run(folder, work, cache, config=SIMILARITY_CONFIG):
    files = ingest(find_files({"train": folder}, (".jpg",)))
    similarity = compute_similarity(files, config, work, cache_dir=cache)
    paths = files.set_index("row")["path"]
    pairs = {frozenset((paths[a], paths[b])) for a, b in zip(similarity.pairs[PAIR_A], similarity.pairs[PAIR_B],
                                                              strict=True)}
    return similarity.embedded, pairs


@pytest.mark.slow
def test_re_runs_embed_only_new_images_and_renames_hit_the_cache(tmp_path, texture):
    data, cache = tmp_path / "data", tmp_path / "cache"
    for seed in range(12):
        texture(data / f"{seed}.jpg", seed=seed)
    embedded, cold_pairs = run(data, tmp_path / "w1", cache)
    assert embedded == 12

    embedded, pairs = run(data, tmp_path / "w2", cache)
    assert embedded == 0 and pairs == cold_pairs, "unchanged data: nothing embedded, the same answer"

    shutil.move(data / "3.jpg", data / "renamed.jpg")
    embedded, _ = run(data, tmp_path / "w3", cache)
    assert embedded == 0, "a renamed file is the same content"

    texture(data / "new1.jpg", seed=100)
    texture(data / "new2.jpg", seed=101)
    embedded, pairs = run(data, tmp_path / "w4", cache)
    assert embedded == 2
    assert any(str(data / "new1.jpg") in pair for pair in pairs), "new images are searched with the old ones"

    embedded, _ = run(data, tmp_path / "w5", None)
    assert embedded == 14, "without a cache everything is embedded"

    # The only new file is one fastdup refuses (one pixel): the re-run must not depend on fastdup reading any.
    from PIL import Image

    Image.new("RGB", (1, 1)).save(data / "only_new.png")
    files = ingest(find_files({"train": data}, (".jpg", ".png")))
    similarity = compute_similarity(files, SIMILARITY_CONFIG, tmp_path / "w6", cache_dir=cache)
    tiny_row = int(files.loc[files["path"] == str(data / "only_new.png"), "row"].iloc[0])
    assert similarity.embedded == 1 and similarity.unanalysed == {tiny_row: "ERROR_IMAGE_TOO_SMALL"}
    assert similarity.skipped is None and len(similarity.pairs) > 0


def count_searched_rows(monkeypatch) -> list[int]:
    """The number of queries of every neighbour search from here on (`top_k_similar`, which all of them run)."""
    from tasks import similarity

    searched: list[int] = []
    search = similarity.top_k_similar
    monkeypatch.setattr(similarity, "top_k_similar",
                        lambda queries, *a, **k: searched.append(len(queries)) or search(queries, *a, **k))
    return searched


@pytest.mark.slow
def test_the_neighbour_search_covers_only_what_changed(tmp_path, texture, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    for seed in range(12):
        texture(data / f"{seed}.jpg", seed=seed)
    searched = count_searched_rows(monkeypatch)
    _, cold_pairs = run(data, tmp_path / "w1", cache)
    _, pairs = run(data, tmp_path / "w2", cache)
    assert searched == [12] and pairs == cold_pairs, "the same contents: the last search is read back"
    _, pairs = run(data, tmp_path / "w2b", cache, SIMILARITY_CONFIG.model_copy(update={"cluster_similarity": 0.5}))
    assert searched == [12] and pairs == cold_pairs, "a setting that does not change the search keeps it"
    texture(data / "new.jpg", seed=100)
    _, pairs = run(data, tmp_path / "w3", cache)
    assert searched == [12, 1, 12], "the new image against all, the others against the new one"
    _, uncached = run(data, tmp_path / "w4", None)
    assert pairs == uncached and any(str(data / "new.jpg") in pair for pair in pairs)


def test_candidate_searches_cover_only_what_changed(tmp_path, texture, monkeypatch):
    from tasks.similarity import empty_pairs
    from tasks.verify import select_candidates

    data, cache = tmp_path / "data", tmp_path / "cache"
    for seed in range(12):
        texture(data / f"{seed}.jpg", seed=seed)
    searched = count_searched_rows(monkeypatch)

    def candidates(cache_dir):
        files = ingest(find_files({"train": data}, (".jpg",)))
        return select_candidates(files, empty_pairs(), CurateConfig().expert.verification, cache_dir)

    cold = candidates(cache)
    assert searched == [12, 12, 12], "colour, part and structure signatures"
    pd.testing.assert_frame_equal(candidates(cache), cold)
    assert searched == [12, 12, 12], "the same contents: nothing searched"
    texture(data / "new.jpg", seed=100)
    warm = candidates(cache)
    assert searched[3:] == [1, 12] * 3
    pd.testing.assert_frame_equal(warm, candidates(None))


class CountingChunks:
    """Runs chunks here and counts the items each kind of work was given: what a run recomputed."""

    def __init__(self) -> None:
        self.items: Counter[str] = Counter()

    def __call__(self, name, function, chunks, **shared):
        self.items[name] += sum(len(chunk) for chunk in chunks)
        return run_here(name, function, chunks, **shared)


def test_re_runs_decode_only_new_or_changed_files(tmp_path, texture):
    data, cache = tmp_path / "data", tmp_path / "cache"
    for seed in range(7):
        texture(data / f"{seed}.jpg", seed=seed)
    (data / "broken.jpg").write_bytes(b"not an image")

    def run(cache_dir=cache):
        counting = CountingChunks()
        frame = ingest(find_files({"train": data}, (".jpg",)), cache_dir, counting, chunk_size=3)
        return frame.set_index("path"), counting.items

    cold, work = run()
    assert work == {"hash": 8, "decode": 8}
    assert cold.loc[str(data / "broken.jpg"), "error"] == "not an image in a format Pillow can read"

    warm, work = run()
    assert work == {"hash": 8, "decode": 0}, "unchanged files are hashed, not decoded"
    pd.testing.assert_frame_equal(warm, cold)

    shutil.move(data / "3.jpg", data / "renamed.jpg")
    texture(data / "5.jpg", seed=50)  # edited in place
    texture(data / "new.jpg", seed=60)
    changed, work = run()
    assert work == {"hash": 9, "decode": 2}, "a renamed file hits the cache; an edited and a new one do not"
    pd.testing.assert_series_equal(changed.loc[str(data / "renamed.jpg")].drop("row"),
                                   cold.loc[str(data / "3.jpg")].drop("row"), check_names=False)
    uncached, _ = run(cache_dir=None)
    pd.testing.assert_frame_equal(changed, uncached)


def test_the_cache_survives_reopening_and_ignores_a_torn_write(tmp_path):
    cache = EmbeddingCache(tmp_path, "engine 1.0")
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.add(["a", "b", "a"], vectors)  # identical files share one vector
    again = EmbeddingCache(tmp_path, "engine 1.0")
    found = again.lookup(["b", "x", "a"])
    assert sorted(found) == [0, 2] and np.array_equal(found[2], vectors[0]) and np.array_equal(found[0], vectors[1])
    assert EmbeddingCache(tmp_path, "engine 2.0").lookup(["a"]) == {}, "another engine version starts empty"

    folder = again.folder
    pd.DataFrame({"sha256": ["a", "b", "c"]}).to_parquet(folder / KEYS_FILE)  # keys ahead of vectors
    assert EmbeddingCache(tmp_path, "engine 1.0").lookup(["a"]) == {}
    assert (folder / VECTORS_FILE).exists()


def test_a_first_runs_vectors_are_cached_without_a_copy(tmp_path):
    """At 100,000 images a copy of the vectors is 230 MB: all-new float32 vectors are kept as given; new
    vectors joining cached ones are appended, and a repeated key keeps its first vector."""
    cache = EmbeddingCache(tmp_path, "engine 1.0")
    first = np.arange(8, dtype=np.float32).reshape(2, 4)
    cache.add(["a", "b"], first)
    assert np.shares_memory(cache.lookup(["a"])[0], first)

    cache.add(["b", "c", "c"], np.full((3, 4), 7.0, np.float32))
    found = cache.lookup(["a", "b", "c"])
    assert [list(found[i]) for i in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [7, 7, 7, 7]]
    with pytest.raises(ValueError):
        cache.add(["d"], first)


def test_verification_results_are_reused_by_content(tmp_path, monkeypatch):
    from PIL import Image

    from tasks.similarity import empty_pairs
    from tasks.verify import runner as verify

    rng = np.random.default_rng(5)
    data = tmp_path / "data"
    data.mkdir()
    for index in range(6):
        blocks = rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)
        Image.fromarray(blocks).resize((120, 120), Image.NEAREST).save(data / f"{index}.jpg", quality=95)
    Image.open(data / "0.jpg").rotate(90).save(data / "0_rotated.jpg", quality=95)
    verified_rows = []
    real = verify.verify_pairs
    monkeypatch.setattr(verify, "verify_pairs", lambda pairs, *a, **k: verified_rows.append(len(pairs))
                        or real(pairs, *a, **k))

    def matches():
        files = ingest(find_files({"train": data}, (".jpg",)))
        found = verify.verify_candidates(files, empty_pairs(), CurateConfig().expert.verification, cache_dir=tmp_path / "c")
        paths = files.set_index("row")["path"]
        return {frozenset((paths[a], paths[b])) for a, b in zip(found[PAIR_A], found[PAIR_B], strict=True)}

    first = matches()
    assert frozenset((str(data / "0.jpg"), str(data / "0_rotated.jpg"))) in first
    assert len(verified_rows) == 1 and verified_rows[0] > 0
    assert matches() == first
    assert len(verified_rows) == 1, "the second run verified no pair again"


@pytest.mark.slow
def test_verification_chunks_share_features_within_their_budget(tmp_path, texture, monkeypatch):
    """Chunks cut by pairs touch the same images; the process keeps their features within the budget."""
    from tasks.config import VerificationConfig
    from tasks.ingest import find_files, ingest
    from tasks.similarity import compute_similarity
    from tasks.verify import cascade
    from tasks.verify import runner as verify

    for seed in range(12):
        texture(tmp_path / "data" / f"{seed}.jpg", seed=seed)
    files = ingest(find_files({"train": tmp_path / "data"}, (".jpg",)))
    pairs = compute_similarity(files, SIMILARITY_CONFIG, tmp_path / "work").pairs
    settings = VerificationConfig()
    monkeypatch.setattr(cascade, "worth_refining", lambda *pair: False)  # no finer pass: its own features
    extracted = []
    extract = verify.extract_features
    monkeypatch.setattr(verify, "extract_features", lambda path, s: extracted.append(path) or extract(path, s))

    def run(budget: int):
        extracted.clear()
        monkeypatch.setattr(verify, "FEATURE_CACHE", verify.FeatureCache())
        matches = verify.verify_candidates(files, pairs, settings, chunk_size=3, feature_cache_bytes=budget)
        return matches, list(extracted)

    shared, with_budget = run(2**26)
    # Once every chunk is verified, the process lets its features go: asking for one extracts it again.
    extracted.clear()
    verify.FEATURE_CACHE.limit(2**26)
    verify.FEATURE_CACHE.features(with_budget[0])
    assert extracted == [with_budget[0]]
    alone, without = run(0)
    images = set(without)
    assert sorted(with_budget) == sorted(images), "each image extracted once"
    assert len(without) > len(images), "chunks of 3 pairs share images"
    assert shared.equals(alone)


def test_result_cache_keeps_arrays_and_missing_values(tmp_path):
    """Signatures are stored as bytes with their dtype, and come back as the same arrays (missing stays missing)."""
    from tasks.cache import ResultCache

    signature = np.linspace(0, 1, 128, dtype=np.float32)
    parts = np.arange(1152, dtype=np.uint16).astype(np.uint8)
    results = pd.DataFrame({"sha256": ["a", "b", "c"], "valid": [True, False, True],
                            "signature": [signature, None, signature * 2], "parts": [parts, np.nan, parts]})
    ResultCache(tmp_path / "c.parquet", ["sha256"]).add(results, ["valid", "signature", "parts"])

    known, todo = ResultCache(tmp_path / "c.parquet", ["sha256"]).split(
        pd.DataFrame({"sha256": ["c", "b", "new"]}), ["valid", "signature", "parts"])

    assert list(todo["sha256"]) == ["new"]
    c, b = known.iloc[0], known.iloc[1]
    assert c["signature"].dtype == np.float32 and np.array_equal(c["signature"], signature * 2)
    assert c["parts"].dtype == np.uint8 and np.array_equal(c["parts"], parts)
    assert not b["valid"] and b["signature"] is None and b["parts"] is None


@pytest.mark.slow
def test_verification_cuts_a_chunk_for_each_slot_of_the_runner(tmp_path, texture):
    """A runner that runs two chunks at once gets at least two, which share the verification threads (one each of
    the default two); the verdicts are those of one chunk."""
    from tasks import verify
    from tasks.chunks import run_here
    from tasks.config import VerificationConfig
    from tasks.ingest import find_files, ingest
    from tasks.similarity import compute_similarity

    for seed in range(12):
        texture(tmp_path / "data" / f"{seed}.jpg", seed=seed)
    files = ingest(find_files({"train": tmp_path / "data"}, (".jpg",)))
    pairs = compute_similarity(files, SIMILARITY_CONFIG, tmp_path / "work").pairs
    handed = []

    def recording(name, function, chunks, **shared):
        handed.append((len(chunks), [len(chunk) for chunk in chunks], shared["workers"]))
        return run_here(name, function, chunks, **shared)

    settings = VerificationConfig()
    one = verify.verify_candidates(files, pairs, settings, run_chunks=recording)
    two = verify.verify_candidates(files, pairs, settings, run_chunks=recording, concurrent_chunks=2)

    (one_chunk, sizes, one_thread_count), (two_chunks, halves, two_thread_count) = handed
    assert (one_chunk, two_chunks) == (1, 2)
    assert sum(halves) == sizes[0] and max(halves) - min(halves) <= 1
    assert (one_thread_count, two_thread_count) == (2, 1)
    assert two.equals(one)
