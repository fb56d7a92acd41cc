"""Similarity: embeddings from an engine behind a small interface, and the nearest-neighbour pairs between them.

`SimilarityEngine` is all the rest of Curate knows about fastdup; `FastdupEngine` implements it. Results are
indexed by position in the list of images given to the engine, so file names (which may hold any bytes) never
have to round-trip through the engine.

The neighbour search is Curate's own (`top_k_similar`): exact, in blocks whose size does not depend on the
dataset's, and shared with verification's colour searches. fastdup's own search over supplied vectors held
about 1.9 GB at 100,000 images and took twice as long at 20,000 (docs/BENCHMARKS.md).
"""

import contextlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np
import pandas as pd

from tasks.cache import EmbeddingCache, LastSearch, settings_digest
from tasks.chunks import ChunkMap, chunked, run_here
from tasks.config import SimilarityConfig
from tasks.images import load_reduced
from tasks.memory import release_free_memory
from tasks.progress import follow_percentages
from tasks.schema import Col, MatchCol

# `tasks.schema.MatchCol`'s names for a pair's two rows, its similarity and its rank, as this module's users import
# them.
PAIR_A, PAIR_B, SIMILARITY, RANK = MatchCol.ROW_A, MatchCol.ROW_B, MatchCol.SIMILARITY, MatchCol.RANK
# Part of the last search's key: change it whenever a change of code changes the neighbours found.
SEARCH_VERSION = "exact cosine 1"
# The suffixes fastdup reads itself (measured on fastdup 2.54: it skips others, .gif, .tga and .dib among them, even
# where OpenCV could decode the file). Images of other formats are given to it as a PNG decoded by Pillow, at most
# this many pixels on a side (its model sees 224).
FASTDUP_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".tif", ".tiff", ".webp",
                              ".jp2", ".ppm", ".pgm", ".pnm"})
_STAGED_SIDE = 512


@dataclass(frozen=True)
class Embedded:
    """An engine's vectors for the images it could read, by position (0..n-1) in the list it was given."""

    positions: np.ndarray  # int64, the positions that got a vector
    vectors: np.ndarray  # len(positions) x d float32
    failed: dict[int, str]  # positions the engine could not read, with its reason


class SimilarityEngine(Protocol):
    """An embedding engine; fastdup is one. It is asked only for images whose vectors are not cached; the
    neighbour search (`nearest_neighbours`) always covers all vectors."""

    name: str

    def version(self) -> str: ...

    def embed(self, images: Sequence[Path], work_dir: Path) -> Embedded: ...


@contextlib.contextmanager
def _output_to(log_path: Path) -> Iterator[TextIO]:
    """Send the process's stdout and stderr (file descriptors, as fastdup's C++ core prints there) to a log;
    yield a stream on the original standard error, for a progress bar a person can still see."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab") as log, os.fdopen(os.dup(saved[1]), "w") as terminal:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)


# fastdup keeps process-wide state and its output is redirected per process: one call at a time per process.
_FASTDUP_CALL = threading.Lock()


class FastdupEngine:
    """fastdup's bundled offline model (d=576): features for a list of files.

    fastdup also computes image statistics, but Curate measures its own while ingest decodes each image (one
    decode, the same numbers for every file, and measures normalised for content: see `tasks.imagestats`)."""

    name = "fastdup"

    def version(self) -> str:
        return metadata.version("fastdup")

    def embed(self, images: Sequence[Path], work_dir: Path) -> Embedded:
        import fastdup  # imported late: it is slow to import and sets process-wide options

        with _FASTDUP_CALL:
            return self._embed(fastdup, images, work_dir)

    def _embed(self, fastdup, images: Sequence[Path], work_dir: Path) -> Embedded:
        if work_dir.exists():
            shutil.rmtree(work_dir)
        staging = work_dir / "input"
        staging.mkdir(parents=True)
        # Stage each image under a name that encodes its position: fastdup's file names come back as we gave
        # them (or relative to the cwd), and an index name survives any character in the original path.
        staged = []
        for position, image in enumerate(images):
            if (staged_path := _stage(image, staging / f"{position:09d}")) is not None:
                staged.append(str(staged_path))
        log, results = work_dir / "fastdup.log", work_dir / "fastdup"
        with _output_to(log) as terminal, follow_percentages(log, "embedding", terminal):
            dataset = fastdup.create(work_dir=str(results), input_dir=staged)
            try:
                status = dataset.run(overwrite=True, run_sentry=False, run_mode=1, verbose=False)  # features only
            except AssertionError:
                # fastdup asserts after extraction when it could read none of the images (all GIFs, or all
                # too small); what it wrote below tells which, as for any other run.
                status = 0
            if status != 0:
                raise RuntimeError(f"fastdup feature extraction failed with status {status}; see {log}")
        if (results / "atrain_features.dat.csv").exists():
            names, vectors = fastdup.load_binary_feature(str(results / "atrain_features.dat"))
        else:
            names, vectors = [], np.empty((0, 0), np.float32)
        bad = results / "atrain_features.bad.csv"
        invalid = pd.read_csv(bad) if bad.exists() else pd.DataFrame({"filename": [], "error_code": []})
        failed = {
            int(position): str(code)
            for position, code in zip(_positions(invalid["filename"]), invalid["error_code"], strict=True)
        }
        embedded = set(_positions(pd.Series(names, dtype=object)).tolist())
        for position in set(range(len(images))) - embedded - set(failed):
            failed[position] = "not read by fastdup"
        return Embedded(positions=_positions(pd.Series(names)), vectors=np.asarray(vectors, np.float32), failed=failed)


def _stage(image: Path, stem: Path) -> Path | None:
    """Give fastdup `image` at `stem` plus a suffix: a link to it when fastdup reads its format, else a PNG of its
    pixels decoded by Pillow (None when that fails: the file is reported as not read)."""
    suffix = image.suffix.lower()
    if suffix in FASTDUP_SUFFIXES:
        stem.with_suffix(suffix).symlink_to(image)
        return stem.with_suffix(suffix)
    decoded = load_reduced(image, "RGB", _STAGED_SIDE)
    if decoded is None:
        return None
    decoded.thumbnail((_STAGED_SIDE, _STAGED_SIDE))
    decoded.save(stem.with_suffix(".png"))
    return stem.with_suffix(".png")


def top_k_similar(
    queries: np.ndarray,
    items: np.ndarray,
    k: int,
    *,
    same_set: bool,
    symmetric: bool = False,
    query_items: np.ndarray | None = None,
    windows: int = 1,
    scale: float = 1.0,
    queries_per_block: int = 512,
    items_per_block: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `queries`, the k items with the largest dot product, best first: (item indexes, scores),
    each len(queries) x k (k is capped at the number of items that may be chosen).

    With `windows` > 1, an item is `windows` consecutive rows of `items` and scores with its best row. `items`
    may be stored compactly (e.g. uint8): each block is turned into float32 times `scale`. With `same_set`,
    query i and item i (or item `query_items[i]`) are the same image, never its own neighbour. With `symmetric`
    as well (every item is a query, and i's score for j is j's score for i, as within one set of vectors), each
    pair of blocks is scored once and read both ways: half the products. The search is exact and runs in blocks
    of about `queries_per_block` x `items_per_block` scores, so memory does not grow with the square of the
    dataset."""
    if symmetric and (not same_set or query_items is not None):
        raise ValueError("a symmetric search is a search of every item against the others: same_set=True, all items")
    count = len(items) // windows
    own_items = np.arange(len(queries)) if query_items is None else np.asarray(query_items, np.int64)
    k = max(0, min(k, count - 1 if same_set else count))
    best = np.full((len(queries), k), -np.inf, np.float32)
    best_item = np.zeros((len(queries), k), np.int64)
    if k == 0:
        return best_item, best

    def item_block(first_item: int, block_items: int) -> np.ndarray:
        block = items[first_item * windows : (first_item + block_items) * windows]
        # Window-major (all items' first window, then all their second, ...): the best window is then a maximum
        # over whole rows of scores, which numpy vectorises; over 9 adjacent columns it cost 3 times the product.
        block = np.ascontiguousarray(
            block.reshape(-1, windows, block.shape[1]).transpose(1, 0, 2), dtype=np.float32
        ).reshape(-1, block.shape[1])
        if scale != 1.0:
            block *= scale
        return block

    def scores_of(rows: slice, block: np.ndarray, first_item: int) -> np.ndarray:
        block_items = len(block) // windows
        scores = queries[rows] @ block.T
        if windows > 1:
            scores = scores.reshape(len(scores), windows, block_items).max(axis=1)
        if same_set:
            own = own_items[rows]
            inside = np.flatnonzero((own >= first_item) & (own < first_item + block_items))
            scores[inside, own[inside] - first_item] = -np.inf
        return scores

    def keep_best(rows: slice, scores: np.ndarray, first_item: int) -> None:
        # Only a score above its row's k-th best so far can enter. Once the first block has set them, such
        # scores are few, and picking them out costs a fraction of partitioning every row of the block.
        entering = scores > best[rows].min(axis=1, keepdims=True)
        if np.count_nonzero(entering) > scores.size // 8:
            values = np.concatenate([best[rows], scores], axis=1)
            indexes = np.concatenate(
                [best_item[rows], np.broadcast_to(np.arange(first_item, first_item + scores.shape[1]), scores.shape)],
                axis=1,
            )
            top = np.argpartition(values, values.shape[1] - k, axis=1)[:, -k:]
            best[rows] = np.take_along_axis(values, top, axis=1)
            best_item[rows] = np.take_along_axis(indexes, top, axis=1)
            return
        newcomer_row, newcomer_column = np.nonzero(entering)
        if not len(newcomer_row):
            return
        affected = np.unique(newcomer_row) + rows.start
        # Each affected row's k best so far and its newcomers, best first within each row; the first k stay.
        candidate_row = np.concatenate([np.repeat(affected, k), newcomer_row + rows.start])
        candidate_value = np.concatenate([best[affected].ravel(), scores[newcomer_row, newcomer_column]])
        candidate_item = np.concatenate([best_item[affected].ravel(), newcomer_column + first_item])
        order = np.lexsort((-candidate_value, candidate_row))
        starts = np.searchsorted(candidate_row[order], affected)
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.append(starts, len(order))))
        kept = order[rank < k]
        best[affected] = candidate_value[kept].reshape(-1, k)
        best_item[affected] = candidate_item[kept].reshape(-1, k)

    if symmetric:
        # Square blocks of the same number of scores as the others; block (r, c) with r < c also gives (c, r).
        side = max(1, int((queries_per_block * items_per_block / windows) ** 0.5))
        for first_item in range(0, count, side):
            block = item_block(first_item, min(side, count - first_item))
            for first in range(0, first_item + 1, side):
                rows = slice(first, min(count, first + side))
                scores = scores_of(rows, block, first_item)
                keep_best(rows, scores, first_item)
                if first != first_item:
                    keep_best(slice(first_item, first_item + scores.shape[1]), scores.T, first)
    else:
        items_per_block = max(1, items_per_block // windows)
        for first_item in range(0, count, items_per_block):
            block = item_block(first_item, min(items_per_block, count - first_item))
            for first in range(0, len(queries), queries_per_block):
                rows = slice(first, min(len(queries), first + queries_per_block))
                keep_best(rows, scores_of(rows, block, first_item), first_item)
    order = np.argsort(-best, axis=1, kind="stable")
    return np.take_along_axis(best_item, order, axis=1), np.take_along_axis(best, order, axis=1)


Inputs = Callable[[], tuple[np.ndarray, np.ndarray]]  # (queries, items) of a search, made when it is needed


def _positions_now(previous_keys: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    """Each previous image's position among `keys` (content keys), or -1 where it is gone. Images with the same
    contents are matched in their order: the n-th such image before is the n-th now."""

    def occurrences(values: Sequence[str]) -> pd.MultiIndex:
        series = pd.Series(values, dtype=object)
        return pd.MultiIndex.from_arrays([series, series.groupby(series).cumcount()])

    if not len(previous_keys) or not len(keys):
        return np.full(len(previous_keys), -1, np.int64)
    return occurrences(keys).get_indexer(occurrences(list(previous_keys))).astype(np.int64)


def top_k_reusing(
    last: LastSearch,
    keys: Sequence[str],
    inputs: Inputs,
    k: int,
    *,
    symmetric: bool = False,
    windows: int = 1,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k_similar(queries, items, k, same_set=True, ...)` over images known by their content `keys`, where
    `inputs()` gives (queries, items), reusing the last search of its kind (`last`) and saving this one there.

    The result is the full search's: an image's k best among old and new images are its k best among the old
    ones, as found last time, merged with its best among the new ones. So only new images are searched against
    all, the others only against the new ones; an image whose list holds one that is gone is searched again.
    Unchanged contents search nothing and `inputs` is not called. (Scores equal to the last bit may rank in
    another order than a full search's, as they may from one block size to another.)"""
    previous = last.get()
    count = len(keys)
    k = max(0, min(k, count - 1))
    # Each last list must hold its image's k best (all the others where the last search covered k or fewer).
    if previous is None or previous[1].shape[1] != min(k, len(previous[0]) - 1) or k == 0:
        found, scores = top_k_similar(*inputs(), k, same_set=True, symmetric=symmetric, windows=windows, scale=scale)
    else:
        found, scores = _updated_search(*previous, keys, inputs, k, windows, scale)
    last.put(keys, found, scores)
    return found, scores


def _updated_search(
    previous_keys: np.ndarray,
    previous_found: np.ndarray,
    previous_scores: np.ndarray,
    keys: Sequence[str],
    inputs: Inputs,
    k: int,
    windows: int,
    scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k_reusing`'s search when a last one exists, with the same k where it covered enough images."""
    now = _positions_now(previous_keys, keys)
    lists = now[previous_found]
    whole = (now >= 0) & (lists >= 0).all(axis=1)
    reused, lists, list_scores = now[whole], lists[whole], previous_scores[whole]
    searched = np.setdiff1d(np.arange(len(keys)), reused)
    added = np.setdiff1d(np.arange(len(keys)), now[now >= 0])
    found = np.zeros((len(keys), k), np.int64)
    scores = np.zeros((len(keys), k), np.float32)
    if len(searched) or len(added):
        queries, items = inputs()
        if len(searched):
            found[searched], scores[searched] = top_k_similar(
                queries[searched], items, k, same_set=True, query_items=searched, windows=windows, scale=scale
            )
        if len(reused) and len(added):
            added_items = items.reshape(-1, windows, items.shape[1])[added].reshape(-1, items.shape[1])
            new_found, new_scores = top_k_similar(
                queries[reused], added_items, k, same_set=False, windows=windows, scale=scale
            )
            merged_found = np.concatenate([lists, added[new_found]], axis=1)
            merged_scores = np.concatenate([list_scores, new_scores], axis=1)
            best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
            lists = np.take_along_axis(merged_found, best, axis=1)
            list_scores = np.take_along_axis(merged_scores, best, axis=1)
    if len(reused):
        found[reused], scores[reused] = lists, list_scores
    return found, scores


# search(kind, inputs, k, **options): `top_k_similar(*inputs(), k, same_set=True, **options)`, perhaps reusing
# the last search of that kind (`reusing_search`).
Search = Callable[..., tuple[np.ndarray, np.ndarray]]


def plain_search(kind: str, inputs: Inputs, k: int, **options) -> tuple[np.ndarray, np.ndarray]:
    """A `Search` that searches everything every time."""
    return top_k_similar(*inputs(), k, same_set=True, **options)


def reusing_search(cache_dir: Path, keys: Sequence[str], version: str) -> Search:
    """A `Search` over the images with content `keys` that reuses the last search of each kind, k and options in
    `cache_dir` (`top_k_reusing`). `version` names what the queries and items were computed with (a content
    cache's version, an engine and its settings)."""

    def search(kind: str, inputs: Inputs, k: int, **options) -> tuple[np.ndarray, np.ndarray]:
        digest = settings_digest(f"{version} {SEARCH_VERSION} k={k} {sorted(options.items())}")
        return top_k_reusing(LastSearch(Path(cache_dir) / f"{kind}-{digest}.npz"), keys, inputs, k, **options)

    return search


def nearest_neighbours(
    vectors: Callable[[], np.ndarray], k: int, search: Search = plain_search
) -> pd.DataFrame:
    """Directed kNN edges between vector indexes by cosine similarity (exact): source, target, similarity,
    each source's k nearest first. `vectors()` gives the vectors, called only when something is searched (a
    `reusing_search` may have nothing to search); a float32 array it gives is scaled to unit length in place
    rather than copied (at 100,000 images a copy is 230 MB)."""

    def unit_vectors() -> tuple[np.ndarray, np.ndarray]:
        given = vectors()
        norms = np.maximum(np.linalg.norm(given, axis=1, keepdims=True), 1e-12)
        if given.dtype == np.float32 and given.flags.c_contiguous:
            unit = np.divide(given, norms, out=given)
        else:
            unit = np.ascontiguousarray(given / norms, dtype=np.float32)
        return unit, unit

    targets, similarities = search("neighbours", unit_vectors, k, symmetric=True)
    return pd.DataFrame(
        {
            "source": np.repeat(np.arange(len(targets)), targets.shape[1]),
            "target": targets.ravel(),
            SIMILARITY: similarities.ravel().astype("float64"),
        }
    )


def _positions(filenames: pd.Series) -> np.ndarray:
    """Recover image positions from staged file names such as '.../input/000000042.jpg'."""
    return filenames.map(lambda name: int(Path(str(name)).stem)).to_numpy(dtype=np.int64)


@dataclass(frozen=True)
class Similarity:
    """The similarity stage's result, keyed by manifest row."""

    pairs: pd.DataFrame  # unordered pairs row_a < row_b, each once, with its best similarity
    engine: str  # name and version
    skipped: str | None  # why similarity was not computed, if it was not
    unanalysed: dict[int, str]  # rows the engine could not read although they decode, with its reason
    embedded: int  # images embedded by this run (the others' vectors came from the cache)


def unordered_pairs(neighbours: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """Turn directed kNN edges between positions into unordered row pairs, each pair once.

    fastdup lists a pair once from each side when each is in the other's k nearest neighbours; counting edges
    would count such pairs twice, so pairs are normalised to row_a < row_b and de-duplicated.
    """
    source = rows[neighbours["source"].to_numpy()]
    target = rows[neighbours["target"].to_numpy()]
    pairs = pd.DataFrame(
        {
            PAIR_A: np.minimum(source, target),
            PAIR_B: np.maximum(source, target),
            SIMILARITY: neighbours[SIMILARITY].to_numpy(),
        }
    )
    pairs = pairs[pairs[PAIR_A] != pairs[PAIR_B]]
    pairs = pairs.groupby([PAIR_A, PAIR_B], as_index=False, sort=True)[SIMILARITY].max()
    return pairs.reset_index(drop=True)


def both_sides(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each unordered pair seen from both of its rows: `row`, `other`, and the pair's other columns."""
    return pd.concat(
        [
            pairs.rename(columns={PAIR_A: "row", PAIR_B: "other"}),
            pairs.rename(columns={PAIR_B: "row", PAIR_A: "other"}),
        ],
        ignore_index=True,
    )


def neighbours_by_row(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each unordered pair seen from both sides: row, other, similarity, and `rank`, the pair's position within
    its row (0 = nearest neighbour); rows ascending, most similar first within a row, ties by the smaller other
    row, then by input order (missing similarities last).

    A general three-column sort takes seconds at a million images; here one integer sort on (row, similarity
    rounded to float32) orders almost everything, and only runs of equal keys are sorted again exactly."""
    a = pairs[PAIR_A].to_numpy(dtype=np.int64)
    b = pairs[PAIR_B].to_numpy(dtype=np.int64)
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= 2**31):
        raise ValueError("rows must lie in [0, 2**31) to be ranked")  # they are manifest row numbers
    other = np.concatenate([b, a])
    similarity = np.concatenate([pairs[SIMILARITY].to_numpy(dtype=np.float64)] * 2)
    # The key: the row in the high 32 bits; in the low ones, the float32 bits of -similarity mapped to integers in
    # the same order (rounding to float32 never reverses an order; + 0.0 turns -0.0 into 0.0, which pandas sorts
    # as equal too); missing similarities last, as pandas sorts them.
    key = np.concatenate([a, b])
    np.left_shift(key, 32, out=key)
    bits = (-similarity + 0.0).astype(np.float32).view(np.uint32)
    negative = bits >= np.uint32(0x80000000)
    np.invert(bits, out=bits, where=negative)
    np.bitwise_or(bits, np.uint32(0x80000000), out=bits, where=~negative)
    del negative
    bits[np.isnan(similarity)] = np.uint32(0xFFFFFFFF)
    np.bitwise_or(key, bits, out=key)
    del bits
    order = np.argsort(key)
    ordered_key = key[order]
    ties = np.flatnonzero(ordered_key[1:] == ordered_key[:-1])
    if len(ties):
        slots = np.unique(np.concatenate([ties, ties + 1]))  # runs of equal keys: contiguous, in key order
        run = order[slots]
        order[slots] = run[np.lexsort((run, other[run], -similarity[run] + 0.0, key[run]))]
    del key
    row = np.right_shift(ordered_key, 32, out=ordered_key)  # the exact pass reordered only within equal keys
    other = other[order]
    similarity = similarity[order]
    del order
    # Position within the row: distance from the row's first pair.
    rank = np.zeros(len(row), dtype=np.int64)
    if len(row):
        changes = np.flatnonzero(row[1:] != row[:-1]) + 1
        rank[changes] = changes
        np.maximum.accumulate(rank, out=rank)
        np.subtract(np.arange(len(row), dtype=np.int64), rank, out=rank)
    return pd.DataFrame({"row": row, "other": other, SIMILARITY: similarity, RANK: rank}, copy=False)


def empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {PAIR_A: pd.Series(dtype="int64"), PAIR_B: pd.Series(dtype="int64"), SIMILARITY: pd.Series(dtype="float64")}
    )


def embed_chunk(images: Sequence[Path], engine: SimilarityEngine, work_dir: Path) -> Embedded:
    """Embed one chunk of images in a folder of its own below `work_dir` (chunks may run at the same time)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    return engine.embed(images, Path(tempfile.mkdtemp(prefix="chunk-", dir=work_dir)))


def embed_in_chunks(
    images: Sequence[Path], engine: SimilarityEngine, work_dir: Path, run_chunks: ChunkMap, chunk_size: int
) -> Embedded:
    """Embed `images` in chunks of `chunk_size` on `run_chunks`; positions index `images` as for one call."""
    parts = run_chunks("embed", embed_chunk, chunked(images, chunk_size), engine=engine, work_dir=work_dir)
    starts = range(0, len(images), chunk_size)
    width = max((part.vectors.shape[1] for part in parts if len(part.positions)), default=0)
    return Embedded(
        positions=np.concatenate([part.positions + start for part, start in zip(parts, starts, strict=True)]),
        vectors=np.concatenate([part.vectors.reshape(-1, width) for part in parts]).astype(np.float32, copy=False)
        if width else np.empty((0, 0), np.float32),
        failed={position + start: reason for part, start in zip(parts, starts, strict=True)
                for position, reason in part.failed.items()},
    )


def compute_similarity(
    files: pd.DataFrame,
    config: SimilarityConfig,
    work_dir: Path,
    engine: SimilarityEngine | None = None,
    cache_dir: Path | None = None,
    run_chunks: ChunkMap = run_here,
    chunk_size: int = 5000,
) -> Similarity:
    """Embed the readable files of an ingest frame (reusing cached vectors by content) in chunks of `chunk_size`
    on `run_chunks`, search the nearest neighbours of all vectors at once (unless the last search in `cache_dir`
    covered the same contents in the same order), and key the results by manifest row."""
    engine = engine or FastdupEngine()
    label = f"{engine.name} {engine.version()}"
    readable = files[files[Col.VALID]]
    if len(readable) < config.min_images:
        return Similarity(
            pairs=empty_pairs(), engine=label, unanalysed={}, embedded=0,
            skipped=f"{len(readable)} readable images; {engine.name} needs at least {config.min_images}",
        )
    rows = readable[Col.ROW].to_numpy(dtype=np.int64)
    paths = [Path(path) for path in readable[Col.PATH]]
    keys = readable[Col.SHA256].astype(str).tolist()
    cache = EmbeddingCache(cache_dir, label) if cache_dir else None
    vectors = cache.lookup(keys) if cache else {}
    missing = [position for position in range(len(rows)) if position not in vectors]
    embedded = embed_in_chunks([paths[position] for position in missing], engine, work_dir / "embed", run_chunks,
                               chunk_size) if missing else None
    failed: dict[int, str] = {}
    if embedded is not None:
        new_positions = [missing[index] for index in embedded.positions]
        failed = {missing[index]: reason for index, reason in embedded.failed.items()}
        if cache:
            cache.add([keys[position] for position in new_positions], embedded.vectors)
            # Views into the cache's one copy of all vectors: the engine's copy and the cache's previous one go.
            vectors = cache.lookup(keys)
        else:
            vectors.update(zip(new_positions, embedded.vectors, strict=True))
        del embedded
    present = np.array(sorted(vectors), dtype=np.int64)
    unanalysed = {int(rows[position]): reason for position, reason in failed.items()}
    if len(present) < config.min_images:
        return Similarity(
            pairs=empty_pairs(), engine=label, unanalysed=unanalysed, embedded=len(missing),
            skipped=f"{len(present)} images {engine.name} could read; it needs at least {config.min_images}",
        )
    # The engine names what the vectors are; the number of neighbours is part of each search's own key.
    search = reusing_search(cache_dir, [keys[p] for p in present], label) if cache_dir else plain_search

    def search_vectors() -> np.ndarray:
        nonlocal vectors, cache
        stacked = np.stack([vectors[p] for p in present])
        vectors = cache = None  # views into the cache's copy of the vectors: the search needs only its own
        release_free_memory()  # what embedding left behind
        return stacked

    neighbours = nearest_neighbours(search_vectors, config.nearest_neighbors, search)
    release_free_memory()
    return Similarity(
        pairs=unordered_pairs(neighbours, rows[present]),
        engine=label,
        skipped=None,
        unanalysed=unanalysed,
        embedded=len(missing),
    )
