"""Candidate pairs: which pairs of images are worth verifying.

Embedding similarity (fastdup) ranks candidates but cannot tell a crop, rotation or overlapping tile from a
different scene of the same texture, so no similarity floor here is a duplicate threshold: verification decides.
Besides each image's nearest neighbours by embedding and colour, the images nearest by part colours, by structure
and by file name are verified. docs/VERIFICATION.md, "Candidates".
"""

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.config import VerificationConfig
from tasks.imagestats import (
    DIHEDRAL_VARIANTS, PART_SIGNATURES, PART_WINDOWS, SIGNATURE, STRUCTURE, dihedral_variants,
)
from tasks.ingest import CONTENT_VERSION
from tasks.schema import Col, MatchCol
from tasks.similarity import Search, neighbours_by_row, plain_search, reusing_search

# The columns that name a pair: its two rows.
_ENDS = [MatchCol.ROW_A, MatchCol.ROW_B]

def _unordered(rows: np.ndarray, others: np.ndarray, similarity: np.ndarray, rank: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({MatchCol.ROW_A: np.minimum(rows, others), MatchCol.ROW_B: np.maximum(rows, others),
                         MatchCol.SIMILARITY: similarity, MatchCol.RANK: rank})


def _ranked_pairs(rows: np.ndarray, found: np.ndarray, similarities: np.ndarray) -> pd.DataFrame:
    """Unordered pairs from each row's nearest items (positions in `rows`, best first), rank 0 for the nearest."""
    k = found.shape[1]
    return _unordered(np.repeat(rows, k), rows[found.ravel()], similarities.ravel(), np.tile(np.arange(k), len(rows)))


def signature_neighbours(
    signatures: np.ndarray, rows: np.ndarray, k: int, search: Search = plain_search
) -> pd.DataFrame:
    """Each row's k most similar rows by colour signature (unordered pairs, similarity = cosine of signatures,
    rank = 0 for the row's nearest)."""
    return _ranked_pairs(rows, *search("colour", lambda: (signatures, signatures), k, symmetric=True))


def part_neighbours(
    signatures: np.ndarray, parts: Sequence[np.ndarray], rows: np.ndarray, k: int, search: Search = plain_search
) -> pd.DataFrame:
    """Each row's k images with a part whose colours are nearest the row's whole image (unordered pairs;
    similarity = that part's cosine; rank 0 for the nearest). `parts` holds each row's `PART_WINDOWS` part
    signatures as uint8 levels (`tasks.imagestats.colour_signatures`), stacked only if something is searched:
    a re-run whose last search still holds (`reusing_search`) does not copy them (230 MB at 100,000 images).

    A 2x zoom into a tile, or a small crop of it, shows the colours of one part of the tile, so it ranks the
    tile first here even when the whole tile's colours and embedding are far from its own."""

    def inputs() -> tuple[np.ndarray, np.ndarray]:
        return signatures, np.stack(parts).reshape(-1, signatures.shape[1]) if len(parts) else np.asarray(parts)

    return _ranked_pairs(rows, *search("parts", inputs, k, windows=PART_WINDOWS, scale=1.0 / 255.0))


def structure_neighbours(
    structures: np.ndarray, rows: np.ndarray, k: int, search: Search = plain_search
) -> pd.DataFrame:
    """Each row's k nearest rows by structure signature (int8, `tasks.imagestats.structure_signature`), each
    compared in whichever of its flips and quarter turns fits best (unordered pairs; similarity = that cosine;
    rank 0 for the nearest)."""
    return _ranked_pairs(rows, *search(
        "structure", lambda: (structures.astype(np.float32) / 127.0, dihedral_variants(structures)), k,
        symmetric=True, windows=DIHEDRAL_VARIANTS, scale=1.0 / 127.0,
    ))


def _natural_key(path: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a file's name without its folders and suffix: digit runs compare as numbers (tile_9 before
    tile_10); digit runs sort before words."""
    stem = Path(path).stem.lower()
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", stem) if part)


def name_neighbours(paths: pd.Series, rows: np.ndarray, k: int) -> pd.DataFrame:
    """Each row with the rows whose files follow it, up to k, in natural order of file name, and its next file
    along each number of a name that holds several (`grid_neighbours`): unordered pairs, no similarity, rank =
    distance in natural order - 1 (0 for a grid neighbour)."""
    ordered = rows[sorted(range(len(rows)), key=lambda position: (_natural_key(paths.iloc[position]), position))]
    steps = range(1, min(k, len(rows) - 1) + 1)
    none = np.empty(0, np.int64)
    sources = np.concatenate([none, *(ordered[:-step] for step in steps)])
    targets = np.concatenate([none, *(ordered[step:] for step in steps)])
    ranks = np.concatenate([none, *(np.full(len(ordered) - step, step - 1) for step in steps)])
    grid_sources, grid_targets = grid_neighbours(paths, rows)
    return _unordered(np.concatenate([sources, grid_sources]), np.concatenate([targets, grid_targets]),
                      np.full(len(sources) + len(grid_sources), np.nan),
                      np.concatenate([ranks, np.zeros(len(grid_sources), np.int64)]))


def grid_neighbours(paths: pd.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows whose file names (without folders and suffix) are the same but for one of several numbers,
    which is the next value found along it: tiles saved with their row and column (`scene_r3_c7`) or pixel offsets
    (`scene_1024_512`) are next to each other on either axis, and the tile below is rarely the next file in
    natural order. Names with one number or none give nothing here."""
    names = [re.split(r"(\d+)", Path(path).stem.lower()) for path in paths]
    grid = pd.DataFrame({"row": rows, "template": ["#".join(parts[0::2]) for parts in names],
                         "numbers": [tuple(int(number) for number in parts[1::2]) for parts in names]})
    grid = grid[grid["numbers"].map(len) >= 2]
    sources, targets = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for _, files in grid.groupby("template", sort=False):
        numbers = np.array(files["numbers"].tolist(), dtype=np.int64)
        for axis in range(numbers.shape[1]):
            # Along `axis`: files equal on every other number, in order of this one; each with the next.
            others = np.delete(numbers, axis, axis=1)
            order = np.lexsort((numbers[:, axis], *others.T[::-1]))
            same_line = (others[order][1:] == others[order][:-1]).all(axis=1)
            sources.append(files["row"].to_numpy()[order][:-1][same_line])
            targets.append(files["row"].to_numpy()[order][1:][same_line])
    return np.concatenate(sources), np.concatenate(targets)


def _paired_dots(
    vectors: np.ndarray, first: np.ndarray, second: np.ndarray, pairs_per_block: int = 65536
) -> np.ndarray:
    """`vectors[first[i]] . vectors[second[i]]` for each i, a block of pairs at a time: gathering both rows of
    800,000 pairs at once held 840 MB of colour signatures for a moment."""
    dots = np.empty(len(first), vectors.dtype)
    for start in range(0, len(first), pairs_per_block):
        block = slice(start, start + pairs_per_block)
        dots[block] = np.einsum("ij,ij->i", vectors[first[block]], vectors[second[block]])
    return dots


def select_candidates(
    files: pd.DataFrame, pairs: pd.DataFrame, config: VerificationConfig, cache_dir: Path | None = None
) -> pd.DataFrame:
    """The pairs worth verifying, with their embedding and colour similarities.

    Each image's nearest neighbours by embedding and by colour signature are proposed (a rotated or mirrored
    copy keeps its colours but is sometimes not among the embedding's nearest neighbours); a proposal is kept
    when either similarity is high, or when it is among the `candidates_always` nearest of one of its images by
    either measure. Copies that are cropped, rotated or mirrored, and tiles that share only part of their
    ground, often score well below the seed's duplicate threshold, so neither floor is a duplicate threshold:
    verification decides. Each image's `candidates_by_part` nearest by part signature (`part_neighbours`), its
    `candidates_by_structure` nearest by structure signature (`structure_neighbours`) when similar enough, and
    its `candidates_by_name` successors by file name (`name_neighbours`) are verified too. With `cache_dir`, each
    search reuses the last of its kind there, for the images it covered (`tasks.similarity.top_k_reusing`): keyed
    by the signatures' version, k and the search's options, not by the floors, which only filter its answer."""
    ranked = neighbours_by_row(pairs)
    ranked = ranked[ranked[MatchCol.RANK] < config.candidates_per_image]
    by_embedding = _unordered(ranked["row"].to_numpy(), ranked["other"].to_numpy(),
                              ranked[MatchCol.SIMILARITY].to_numpy(), ranked[MatchCol.RANK].to_numpy())
    readable = files[files[SIGNATURE].notna()]
    signatures = np.stack(readable[SIGNATURE].to_numpy()) if len(readable) else np.empty((0, 0), np.float32)
    rows = readable[Col.ROW].to_numpy(dtype=np.int64)
    position = pd.Series(np.arange(len(rows)), index=rows)
    search = reusing_search(cache_dir, readable[Col.SHA256].astype(str).tolist(), CONTENT_VERSION) if cache_dir \
        else plain_search

    def with_similarities(proposed: pd.DataFrame) -> pd.DataFrame:
        proposed = proposed.merge(pairs[[*_ENDS, MatchCol.SIMILARITY]], on=_ENDS, how="left")
        proposed[MatchCol.COLOUR_SIMILARITY] = _paired_dots(signatures,
                                                            position.reindex(proposed[MatchCol.ROW_A]).to_numpy(),
                                                            position.reindex(proposed[MatchCol.ROW_B]).to_numpy())
        return proposed

    by_colour = signature_neighbours(signatures, rows, config.candidates_per_image, search)
    proposals = pd.concat([by_embedding, by_colour]).groupby(_ENDS, as_index=False)[MatchCol.RANK].min()
    proposals = with_similarities(proposals)
    worth = (
        (proposals[MatchCol.SIMILARITY].fillna(0.0) >= config.candidate_similarity)
        | (proposals[MatchCol.COLOUR_SIMILARITY] >= config.candidate_colour_similarity)
        | (proposals[MatchCol.RANK] < config.candidates_always)
    )
    chosen = [proposals.loc[worth, _ENDS]]
    if config.candidates_by_part and len(readable):
        by_part = part_neighbours(signatures, readable[PART_SIGNATURES].to_numpy(), rows,
                                  config.candidates_by_part, search)
        chosen.append(by_part[_ENDS])
    if config.candidates_by_structure and len(readable):
        structures = np.stack(readable[STRUCTURE].to_numpy())
        near = structure_neighbours(structures, rows, config.candidates_by_structure, search)
        chosen.append(near.loc[near[MatchCol.SIMILARITY] >= config.candidate_structure_similarity, _ENDS])
    if config.candidates_by_name:
        chosen.append(name_neighbours(readable[Col.PATH], rows, config.candidates_by_name)[_ENDS])
    candidates = pd.concat(chosen).drop_duplicates()
    return with_similarities(candidates).sort_values(_ENDS).reset_index(drop=True)
