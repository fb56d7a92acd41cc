"""A content-keyed cache of embeddings: an image's vector is computed once per engine version, whatever its name.

Keys are sha256 digests of the file bytes, so a renamed or moved file hits the cache and an edited one misses.
Each engine version has its own folder (vectors from another model are not comparable). Files are replaced
atomically, so a crash or a concurrent run can lose entries (they are computed again) but never corrupt them.
"""

import os
import re
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

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
        """Store new vectors and write the cache back (atomically: temporary names, then renames)."""
        fresh = {}  # identical files share one vector
        for key, vector in zip(keys, vectors, strict=True):
            if key not in self._index:
                fresh.setdefault(key, vector)
        if not fresh:
            return
        stacked = np.stack(list(fresh.values())).astype(np.float32)
        self._vectors = stacked if self._vectors is None else np.concatenate([self._vectors, stacked])
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
