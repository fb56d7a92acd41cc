"""Similarity: embeddings and nearest-neighbour pairs from an engine behind a small interface.

`SimilarityEngine` is all the rest of Curate knows about fastdup; `FastdupEngine` implements it. Results are
indexed by position in the list of images given to the engine, so file names (which may hold any bytes) never
have to round-trip through the engine.
"""

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np
import pandas as pd

from tasks.config import SimilarityConfig
from tasks.progress import follow_percentages
from tasks.schema import Col

PAIR_A, PAIR_B, SIMILARITY = "row_a", "row_b", "similarity"


@dataclass(frozen=True)
class EngineOutput:
    """What an engine returns, indexed by image position (0..n-1) in its input list."""

    embeddings: np.ndarray  # n x d float32
    neighbours: pd.DataFrame  # directed kNN edges: source, target, similarity (cosine, higher = more alike)
    failed: dict[int, str]  # positions the engine could not read, with its reason


class SimilarityEngine(Protocol):
    """An embedding and nearest-neighbour engine; fastdup is one."""

    name: str

    def version(self) -> str: ...

    def analyse(self, images: Sequence[Path], settings: SimilarityConfig, work_dir: Path) -> EngineOutput: ...


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


class FastdupEngine:
    """fastdup's bundled offline model (d=576): features and the kNN graph in one run.

    fastdup also computes image statistics, but Curate measures its own while ingest decodes each image (one
    decode, the same numbers for every file, and measures normalised for content: see `tasks.imagestats`)."""

    name = "fastdup"

    def version(self) -> str:
        return metadata.version("fastdup")

    def analyse(self, images: Sequence[Path], settings: SimilarityConfig, work_dir: Path) -> EngineOutput:
        import fastdup  # imported late: it is slow to import and sets process-wide options

        if work_dir.exists():
            shutil.rmtree(work_dir)
        staging = work_dir / "input"
        staging.mkdir(parents=True)
        # Stage each image under a name that encodes its position: fastdup's file names come back as we gave
        # them (or relative to the cwd), and an index name survives any character in the original path.
        staged = []
        for position, image in enumerate(images):
            link = staging / f"{position:09d}{image.suffix.lower()}"
            link.symlink_to(image)
            staged.append(str(link))
        fd_dir = work_dir / "fastdup"
        log = work_dir / "fastdup.log"
        with _output_to(log) as terminal, follow_percentages(log, "embedding", terminal):
            dataset = fastdup.create(work_dir=str(fd_dir), input_dir=staged)
            status = dataset.run(
                overwrite=True,
                run_sentry=False,
                nearest_neighbors_k=settings.nearest_neighbors,
                threshold=0.0,  # keep all k neighbours: every image gets a nearest neighbour and outliers show
                cc_threshold=settings.cluster_similarity,
                verbose=False,
            )
            if status != 0:
                raise RuntimeError(f"fastdup run failed with status {status}; see {log}")
            edges = dataset.similarity()
            invalid = dataset.invalid_instances()
        names, embeddings = fastdup.load_binary_feature(str(fd_dir / "atrain_features.dat"))

        neighbours = pd.DataFrame(
            {
                "source": _positions(edges["filename_from"]),
                "target": _positions(edges["filename_to"]),
                SIMILARITY: edges["distance"].astype("float64"),  # fastdup's "distance" is cosine similarity
            }
        )
        ordered = np.zeros((len(images), embeddings.shape[1]), dtype=np.float32)
        ordered[_positions(pd.Series(names))] = embeddings
        failed = {
            int(position): str(code)
            for position, code in zip(_positions(invalid["filename"]), invalid["error_code"], strict=True)
        }
        return EngineOutput(embeddings=ordered, neighbours=neighbours, failed=failed)


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


def neighbours_by_row(pairs: pd.DataFrame) -> pd.DataFrame:
    """Each unordered pair seen from both sides (row, other, similarity), most similar first within a row."""
    both_sides = pd.concat(
        [
            pairs[[PAIR_A, PAIR_B, SIMILARITY]].set_axis(["row", "other", SIMILARITY], axis=1),
            pairs[[PAIR_B, PAIR_A, SIMILARITY]].set_axis(["row", "other", SIMILARITY], axis=1),
        ]
    )
    return both_sides.sort_values(["row", SIMILARITY, "other"], ascending=[True, False, True], kind="stable")


def empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {PAIR_A: pd.Series(dtype="int64"), PAIR_B: pd.Series(dtype="int64"), SIMILARITY: pd.Series(dtype="float64")}
    )


def compute_similarity(
    files: pd.DataFrame, settings: SimilarityConfig, work_dir: Path, engine: SimilarityEngine | None = None
) -> Similarity:
    """Run the engine over the readable files of an ingest frame and key its results by manifest row."""
    engine = engine or FastdupEngine()
    label = f"{engine.name} {engine.version()}"
    readable = files[files[Col.VALID]]
    if len(readable) < settings.min_images:
        return Similarity(
            pairs=empty_pairs(),
            engine=label,
            skipped=f"{len(readable)} readable images; {engine.name} needs at least {settings.min_images}",
            unanalysed={},
        )
    rows = readable[Col.ROW].to_numpy(dtype=np.int64)
    output = engine.analyse([Path(path) for path in readable[Col.PATH]], settings, work_dir)
    return Similarity(
        pairs=unordered_pairs(output.neighbours, rows),
        engine=label,
        skipped=None,
        unanalysed={int(rows[position]): reason for position, reason in output.failed.items()},
    )
