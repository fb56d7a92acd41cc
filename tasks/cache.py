"""Content-keyed caches: an image's statistics and embedding, and a pair's verification, are computed once,
whatever the files are called; a neighbour search is repeated only for the images it has not seen.

Keys are sha256 digests of the file bytes, so a renamed or moved file hits the cache and an edited one misses.
Each engine version has its own folder (vectors from another model are not comparable). Files are replaced
atomically, so a crash or a concurrent run can lose entries (they are computed again) but never corrupt them.
"""

import hashlib
import json
import os
import re
import uuid
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

KEYS_FILE, VECTORS_FILE = "keys.parquet", "vectors.npy"


class EmbeddingCache:
    """sha256 -> vector, for one engine identity (e.g. 'fastdup 2.54'), stored under `root`."""

    def __init__(self, root: Path, engine: str) -> None:
        self.folder = Path(root) / re.sub(r"[^A-Za-z0-9.-]+", "-", engine)
        keys_path, vectors_path = self.folder / KEYS_FILE, self.folder / VECTORS_FILE
        if keys_path.exists() and vectors_path.exists():
            keys = pd.read_parquet(keys_path)["sha256"].tolist()
            vectors = np.load(vectors_path)
        else:
            keys, vectors = [], None
        if vectors is None or len(keys) != len(vectors):  # absent, or a torn pair of files: start again
            keys, vectors = [], None
        self._index = {key: i for i, key in enumerate(keys)}
        self._vectors = vectors

    def lookup(self, keys: list[str]) -> dict[int, np.ndarray]:
        """Cached vectors by position in `keys` (positions without one are absent)."""
        if self._vectors is None:
            return {}
        return {position: self._vectors[self._index[key]] for position, key in enumerate(keys) if key in self._index}

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        """Store new vectors and write the cache back (atomically: temporary names, then renames). When every
        key is new, the cache keeps `vectors` itself rather than a copy: the caller must not change it."""
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors")
        fresh: dict[str, int] = {}  # identical files share one vector: the first one's row
        for row, key in enumerate(keys):
            if key not in self._index:
                fresh.setdefault(key, row)
        if not fresh:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        # At 100,000 images a copy of the vectors is 230 MB: a first run's all-new vectors are kept as they are.
        new = vectors if len(fresh) == len(vectors) else vectors[list(fresh.values())]
        self._vectors = new if self._vectors is None else np.concatenate([self._vectors, new])
        for key in fresh:
            self._index[key] = len(self._index)
        self.folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        vectors_tmp, keys_tmp = self.folder / f".{token}.npy", self.folder / f".{token}.parquet"
        np.save(vectors_tmp, self._vectors)
        pd.DataFrame({"sha256": list(self._index)}).to_parquet(keys_tmp, index=False)
        # Vectors first: a reader that finds keys longer than vectors (a crash between the renames) starts over.
        os.replace(vectors_tmp, self.folder / VECTORS_FILE)
        os.replace(keys_tmp, self.folder / KEYS_FILE)


_ARRAY_DTYPES = b"curate_array_dtypes"


def _to_table(frame: pd.DataFrame) -> pa.Table:
    """`frame` as an Arrow table; a column of numpy arrays (or missing) is stored as their bytes, its dtype in the
    schema's metadata. Arrow would otherwise convert every array element by element: about 1.4 GB and 7 s for
    100,000 rows of 1,280 numbers, against the 130 MB of the numbers themselves."""
    dtypes, columns = {}, {}
    for name in frame.columns:
        values = frame[name]
        first_valid = values.first_valid_index() if values.dtype == object else None
        first = values.loc[first_valid] if first_valid is not None else None
        if isinstance(first, np.ndarray):  # missing entries (None or NaN) stay missing
            dtypes[name] = first.dtype.str
            columns[name] = pa.array(
                [value.tobytes() if isinstance(value, np.ndarray) else None for value in values], pa.binary()
            )
        else:
            columns[name] = pa.Array.from_pandas(values)
    table = pa.table(columns)
    return table.replace_schema_metadata({_ARRAY_DTYPES: json.dumps(dtypes).encode()})


def _from_table(table: pa.Table) -> pd.DataFrame:
    """The frame `_to_table` stored, with its array columns as numpy arrays again."""
    dtypes = json.loads((table.schema.metadata or {}).get(_ARRAY_DTYPES, b"{}"))
    plain = table.drop_columns(list(dtypes)).to_pandas()
    for name, dtype in dtypes.items():
        plain[name] = pd.Series(
            [None if value is None else np.frombuffer(value, dtype) for value in table[name].to_pylist()],
            dtype=object,
        )
    return plain[table.column_names]


class ResultCache:
    """Results keyed by content (one or more sha256 columns), for one set of settings, in one Parquet file.

    A result computed once from the same bytes with the same settings is never computed again. Results may hold
    numpy arrays (an image's colour signatures)."""

    def __init__(self, path: Path, keys: list[str]) -> None:
        self.path, self.keys = Path(path), keys
        self._known = _from_table(pq.read_table(self.path)) if self.path.exists() else None

    def split(self, frame: pd.DataFrame, values: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(rows of `frame` with cached `values` filled in, rows still to compute); `frame` carries the keys."""
        if self._known is None or frame.empty:
            return frame.iloc[0:0].assign(**{value: None for value in values}), frame
        merged = frame.merge(self._known[[*self.keys, *values]], on=self.keys, how="left", indicator=True)
        hit = (merged.pop("_merge") == "both").to_numpy()
        return merged[hit], frame[~hit]

    def add(self, results: pd.DataFrame, values: list[str]) -> None:
        """Store newly computed results and write the file back atomically."""
        if results.empty:
            return
        fresh = results[[*self.keys, *values]]
        table = fresh if self._known is None else pd.concat([self._known, fresh])
        self._known = table.drop_duplicates(self.keys).reset_index(drop=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{uuid.uuid4().hex[:8]}.parquet")
        pq.write_table(_to_table(self._known), temporary)
        os.replace(temporary, self.path)


def settings_digest(settings: str) -> str:
    """A short name for one set of settings, for a cache file's name."""
    return hashlib.sha256(settings.encode()).hexdigest()[:16]


class LastSearch:
    """The last top-k search of one kind, in one file per kind and settings: the content key of each image it
    covered, in order, and each image's k best items as positions in that order, with their scores. A re-run maps
    it onto its own images by content (`tasks.similarity.top_k_reusing`) and searches only what changed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def get(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(keys, found, scores), or None when there is none or it cannot be read (it is then searched again)."""
        try:
            with np.load(self.path) as saved:
                return saved["keys"].astype(str), saved["found"], saved["scores"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def put(self, keys: Iterable[str], found: np.ndarray, scores: np.ndarray) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{uuid.uuid4().hex[:8]}.npz")
        with open(temporary, "wb") as handle:
            np.savez(handle, keys=np.array(list(keys), dtype="S"), found=found, scores=scores)
        os.replace(temporary, self.path)


class PairCache(ResultCache):
    """Verification results keyed by the two files' contents, in order (sha256 of a, sha256 of b), for one set
    of verification settings: a re-run verifies only pairs it has not seen, and a renamed file still hits."""

    KEY_A, KEY_B = "sha256_a", "sha256_b"

    def __init__(self, root: Path, settings_json: str) -> None:
        path = Path(root) / f"verification-{settings_digest(settings_json)}.parquet"
        super().__init__(path, [self.KEY_A, self.KEY_B])
