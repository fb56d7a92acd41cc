"""Verifying many pairs: features kept per process (`FeatureCache`), pairs verified in batches on threads
(`verify_pairs`), chunks of pairs that touch few images (`chunks_by_locality`), and the verification stage of the
flow (`verify_candidates`), which verifies only pairs not verified before (`tasks.cache.PairCache`).
"""

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import reverse_cuthill_mckee

from tasks.cache import PairCache
from tasks.chunks import ChunkMap, balanced_size, run_here, threads_per_chunk
from tasks.config import VerificationConfig
from tasks.memory import release_free_memory
from tasks.placement import predicted_overlaps
from tasks.progress import progress
from tasks.schema import Col, MatchCol
from tasks.verify.candidates import select_candidates
from tasks.verify.cascade import verify_pair
from tasks.verify.features import FINE, WORKING, ImageFeatures, Resolution, extract_features
from tasks.verify.verdict import UNREADABLE, Verification

# Part of the verification cache's key: change it whenever a change of code (not of settings) changes results.
METHOD_VERSION = "orb-ransac+correlation-18"
# Columns verify_pairs adds to a frame of pairs: the fields of `Verification`.
RESULT_COLUMNS = [MatchCol.STAGE, MatchCol.EVIDENCE, MatchCol.REASON, MatchCol.INLIER_RATIO, MatchCol.CORRELATION,
                  MatchCol.INLIERS, MatchCol.TRANSFORM, MatchCol.SHARE_A, MatchCol.SHARE_B, MatchCol.A_TO_B]
# Pairs handed to a thread at a time: enough to make handing them over cheap.
PAIRS_PER_BATCH: int = 64
DEFAULT_FEATURE_CACHE_BYTES = 64 * 2**20


class FeatureCache:
    """The features of recently seen images, shared by the verification chunks that run in one process: chunks
    are cut by pairs, and neighbouring chunks touch many of the same images. Keyed by path, size and
    modification time (an edited file is extracted again) and by resolution; at most `max_bytes` of arrays,
    the least recently used dropped first. Thread-safe."""

    def __init__(self) -> None:
        self.max_bytes = 0
        self._entries: OrderedDict[tuple, tuple[ImageFeatures | None, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def features(self, path: str, resolution: Resolution = WORKING) -> ImageFeatures | None:
        """`extract_features(path, resolution)`, from the cache when the same file was extracted recently."""
        try:
            status = os.stat(path)
            key = (path, status.st_size, status.st_mtime_ns, resolution)
        except OSError:
            return None  # what extract_features returns for a file it cannot read
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        extracted = extract_features(path, resolution)
        size = 1024 + (extracted.nbytes if extracted is not None else 0)
        with self._lock:
            if key not in self._entries and size <= self.max_bytes:
                self._entries[key] = (extracted, size)
                self._bytes += size
                self._trim()
        return extracted

    def limit(self, max_bytes: int) -> None:
        """Keep at most `max_bytes` from now on (dropping the oldest entries beyond it now)."""
        with self._lock:
            self.max_bytes = max_bytes
            self._trim()

    def _trim(self) -> None:
        while self._bytes > self.max_bytes:
            self._bytes -= self._entries.popitem(last=False)[1][1]


# One per process: a Dask worker or the flow's own process keeps what its earlier chunks extracted.
FEATURE_CACHE = FeatureCache()


def _cached_fine_features(features: ImageFeatures) -> ImageFeatures | None:
    return FEATURE_CACHE.features(features.path, FINE)


def verify_pairs(
    pairs: pd.DataFrame,
    config: VerificationConfig = VerificationConfig(),
    workers: int = 2,
    feature_cache_bytes: int = DEFAULT_FEATURE_CACHE_BYTES,
) -> pd.DataFrame:
    """Verify every row of `pairs` (columns path_a, path_b) with `tasks.verify.cascade.verify_pair`.

    Returns a copy with the columns of `Verification` added (`RESULT_COLUMNS`); a pair with an unreadable image
    is rejected at the features stage. Each run of pairs takes its images' features from this process's
    `FEATURE_CACHE` (up to `feature_cache_bytes`), which extracts those it does not hold: memory is bounded by
    that budget, not by how many images the pairs touch, and an image whose pairs lie close together in the
    order of `pairs` (as `chunks_by_locality` orders them) is extracted once; fine features only for the doubtful
    pairs' images. `workers` threads share the work (OpenCV releases the GIL), with OpenCV's own threading off
    meanwhile to avoid oversubscription. Pairs go to the threads in runs of `PAIRS_PER_BATCH` consecutive rows.
    """
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    FEATURE_CACHE.limit(feature_cache_bytes)

    def verify_batch(batch: list[tuple[str, str]]) -> list[Verification]:
        paths = dict.fromkeys(path for pair in batch for path in pair)
        features = {path: FEATURE_CACHE.features(path, WORKING) for path in paths}
        return [
            UNREADABLE if features[path_a] is None or features[path_b] is None
            else verify_pair(features[path_a], features[path_b], config, _cached_fine_features)
            for path_a, path_b in batch
        ]

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows = list(zip(pairs[MatchCol.PATH_A], pairs[MatchCol.PATH_B]))
            batches = [rows[start : start + PAIRS_PER_BATCH] for start in range(0, len(rows), PAIRS_PER_BATCH)]
            verified = itertools.chain.from_iterable(pool.map(verify_batch, batches))
            results = list(progress(verified, "verify", len(pairs), "pair"))
    finally:
        cv2.setNumThreads(previous_threads)
    release_free_memory()  # the batches' decoded images and correlation surfaces, spread over the threads' heaps
    return _with_results(pairs, results)


def _with_results(pairs: pd.DataFrame, results: Sequence[Verification]) -> pd.DataFrame:
    """A copy of `pairs` with the fields of each row's verification as `RESULT_COLUMNS`."""
    verified = pairs.copy()
    verified[MatchCol.STAGE] = [str(result.stage) for result in results]
    verified[MatchCol.EVIDENCE] = [str(result.evidence) for result in results]
    verified[MatchCol.REASON] = [str(result.reason) for result in results]
    verified[MatchCol.INLIER_RATIO] = np.array([result.inlier_ratio for result in results], np.float64)
    verified[MatchCol.CORRELATION] = np.array([result.correlation for result in results], np.float64)
    verified[MatchCol.INLIERS] = np.array([result.inliers for result in results], np.int64)
    verified[MatchCol.TRANSFORM] = [result.transform for result in results]
    verified[MatchCol.SHARE_A] = np.array([result.share_a for result in results], np.float64)
    verified[MatchCol.SHARE_B] = np.array([result.share_b for result in results], np.float64)
    # The map as 9 numbers, so that it caches and stores as one fixed-size list.
    verified[MatchCol.A_TO_B] = pd.Series([None if result.a_to_b is None else result.a_to_b.ravel().astype(np.float64)
                                           for result in results], index=verified.index, dtype=object)
    return verified


def chunks_by_locality(pairs: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """`pairs` (row_a, row_b, ...) cut into chunks of at most `size` pairs that each touch few images.

    Each chunk extracts the features of every image it touches, so it touches at most 2 x `size` images whatever
    the order; candidate partners lie anywhere in row order, though, so chunks in row order would extract many
    images again. Reverse Cuthill-McKee over the candidate graph orders the images so that partners sit close
    together, and the pairs are taken in that order (by their earlier image)."""
    if pairs.empty:
        return []
    ends = np.concatenate([pairs[MatchCol.ROW_A].to_numpy(), pairs[MatchCol.ROW_B].to_numpy()])
    images, index = np.unique(ends, return_inverse=True)
    a, b = index[: len(pairs)], index[len(pairs) :]
    graph = csr_matrix((np.ones(len(pairs), np.int8), (a, b)), shape=(len(images), len(images)))
    order = reverse_cuthill_mckee((graph + graph.T).tocsr(), symmetric_mode=True)
    position = np.empty(len(images), np.int64)
    position[order] = np.arange(len(images))
    ranked = np.argsort(np.minimum(position[a], position[b]), kind="stable")
    return [pairs.iloc[ranked[start : start + size]] for start in range(0, len(pairs), size)]


def verify_candidates(
    files: pd.DataFrame,
    pairs: pd.DataFrame,
    config: VerificationConfig,
    cache_dir: Path | None = None,
    run_chunks: ChunkMap = run_here,
    chunk_size: int = 5000,
    feature_cache_bytes: int = DEFAULT_FEATURE_CACHE_BYTES,
    concurrent_chunks: int = 1,
) -> pd.DataFrame:
    """The verification stage: candidate pairs (row_a, row_b, similarity) with the columns of `RESULT_COLUMNS`.
    Only accepted pairs (with evidence) are returned. Two rounds: the candidates similarity proposes
    (`select_candidates`), then the pairs that the first round's relations place over each other
    (`tasks.placement.predicted_overlaps`: tiles whose names say nothing and whose shared strip similarity does not
    rank). With `cache_dir`, pairs of contents verified before (with the same verdict settings,
    `VerificationConfig.verdict_settings`) are not verified again. The pairs to verify run on `run_chunks` in
    chunks of at most `chunk_size` pairs (`chunks_by_locality`). `run_chunks` runs `concurrent_chunks` of them at
    once, so their number is a multiple of that given enough pairs (`balanced_size`), and they share the cores
    (`threads_per_chunk`). The features of their
    images come from what each process keeps (`FeatureCache`, up to `feature_cache_bytes`), so memory is bounded by
    that budget, not by the dataset. Once every chunk is verified, this process's features are dropped
    (`FEATURE_CACHE`)."""
    candidates = select_candidates(files, pairs, config, cache_dir)
    chosen = dict(files=files, config=config, cache_dir=cache_dir, run_chunks=run_chunks,
                  chunk_size=chunk_size, feature_cache_bytes=feature_cache_bytes, concurrent_chunks=concurrent_chunks)
    matched = verify_chosen(candidates, **chosen)
    # A second round: what the accepted pairs place over each other, unless verified already. (A third added
    # nothing on tiles named by a hash: what the second misses lies in sets of tiles no relation links.)
    ends = [MatchCol.ROW_A, MatchCol.ROW_B]
    placed = predicted_overlaps(matched, config.overlap_min_coverage)
    placed = placed.merge(candidates[ends], on=ends, how="left", indicator=True)
    placed = placed.loc[(placed.pop("_merge") == "left_only").to_numpy(), ends]
    if placed.empty:
        return matched
    placed = placed.merge(pairs[[*ends, MatchCol.SIMILARITY]], on=ends, how="left")
    more = verify_chosen(placed.assign(**{MatchCol.COLOUR_SIMILARITY: np.nan}), **chosen)
    return pd.concat([matched, more]).sort_values(ends).reset_index(drop=True)


def verify_chosen(
    candidates: pd.DataFrame,
    files: pd.DataFrame,
    config: VerificationConfig,
    cache_dir: Path | None,
    run_chunks: ChunkMap,
    chunk_size: int,
    feature_cache_bytes: int,
    concurrent_chunks: int,
) -> pd.DataFrame:
    """The accepted pairs of `candidates` (row_a, row_b, ...), verified as `verify_candidates` describes."""
    by_row = files.set_index(Col.ROW)
    ends = (MatchCol.ROW_A, MatchCol.ROW_B)

    def with_each_image(frame: pd.DataFrame, column: str, names: tuple[str, str]) -> pd.DataFrame:
        """`frame` with `column` of each pair's two files added as `names`, as Arrow strings: numpy would hold a
        Python string for each pair's end (at 800,000 pairs, 185 MB more for the keys alone)."""
        values = by_row[column].astype(str)
        return frame.assign(**{name: values.reindex(frame[end]).array for name, end in zip(names, ends)})

    keys, paths = (PairCache.KEY_A, PairCache.KEY_B), (MatchCol.PATH_A, MatchCol.PATH_B)
    # Keyed by what can change a verdict only: a change of candidate settings re-verifies nothing verified before.
    cache = PairCache(cache_dir, f"{METHOD_VERSION} {config.verdict_settings()}") if cache_dir else None
    known, todo = cache.split(with_each_image(candidates, Col.SHA256, keys), RESULT_COLUMNS) if cache \
        else (None, candidates)
    # The chunks carry what verification reads and no more: at 100,000 images they hold 800,000 pairs.
    size = balanced_size(len(todo), chunk_size, concurrent_chunks)
    chunks = chunks_by_locality(with_each_image(todo[candidates.columns], Col.PATH, paths), size)
    del todo
    threads = threads_per_chunk(concurrent_chunks)
    parts = run_chunks("verify", verify_pairs, chunks, config=config, workers=threads,
                       feature_cache_bytes=feature_cache_bytes) if chunks else []
    del chunks
    # Every chunk is verified: this process's features are of no more use to this run. Gathering and caching the
    # results is when a run's memory peaks (at 100,000 images, with a full feature cache beside them).
    FEATURE_CACHE.limit(0)
    release_free_memory()
    verified = pd.concat(parts).drop(columns=list(paths)) if parts else _with_results(candidates.iloc[0:0], [])
    del parts
    if cache:
        cache.add(with_each_image(verified, Col.SHA256, keys), RESULT_COLUMNS)
        verified = pd.concat([known.drop(columns=list(keys)), verified]) if len(known) else verified
    matched = verified[verified[MatchCol.EVIDENCE] != ""].sort_values(list(ends))
    return matched.reset_index(drop=True)
