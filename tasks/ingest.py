"""Ingest: find every image file of every split, hash it, and check that it decodes.

A file that cannot be read is data, not an exception: it becomes a row with `valid=False` and its `error`.
"""

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import PIL
from PIL import Image

from tasks.cache import ResultCache, settings_digest
from tasks.chunks import ChunkMap, balanced_size, chunked, run_here, threads_per_chunk
from tasks.errors import DatasetError
from tasks.images import image_suffixes, opened, unreadable_reason
from tasks.imagestats import PART_SIGNATURES, SIGNATURE, STRUCTURE, colour_signatures, measure, structure_signature
from tasks.memory import release_free_memory
from tasks.progress import progress
from tasks.schema import Col


@dataclass(frozen=True)
class FoundFile:
    path: Path
    split: str
    label: str | None


@dataclass(frozen=True)
class Inventory:
    """What a walk over the split folders found."""

    images: list[FoundFile]
    ignored: list[Path]  # files whose suffix is not an image suffix: counted in the summary, not curated


def find_files(splits: Mapping[str, Path], extensions: Iterable[str] | None = None) -> Inventory:
    """Walk each split folder in path order for files with one of `extensions` (default: every raster format
    Pillow opens, `image_suffixes`). Files in subfolders take the first subfolder's name as label.
    Raises `DatasetError` when a split folder is missing or no image file is found at all.

    Symbolic links to folders are not followed (a link loop must not hang the walk); hidden files and folders
    (names starting with '.') are skipped, as tools and operating systems keep their own files there.
    """
    suffixes = {suffix.lower() for suffix in (image_suffixes() if extensions is None else extensions)}
    images: list[FoundFile] = []
    ignored: list[Path] = []
    for split, folder in splits.items():
        root = Path(folder).resolve()
        if not root.is_dir():
            raise DatasetError(f"split {split!r}: {folder} is not a folder")
        for directory, subdirectories, names in os.walk(root):
            subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
            relative = Path(directory).relative_to(root)
            label = relative.parts[0] if relative.parts else None
            for name in sorted(names):
                if name.startswith("."):
                    continue
                path = Path(directory, name)
                if path.suffix.lower() in suffixes:
                    images.append(FoundFile(path=path, split=split, label=label))
                else:
                    ignored.append(path)
    if not images:
        raise DatasetError("no image files found in " + ", ".join(f"{s}={p}" for s, p in splits.items()))
    return Inventory(images=images, ignored=ignored)


def printable(text: str) -> str:
    """`text` as valid UTF-8: bytes of a file name that are not UTF-8 become \\xNN escapes.

    Parquet strings must be UTF-8, and os.walk returns such bytes as lone surrogates."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# File kinds by the first letter of `stat.filemode`, for the error of a file that is not a regular file.
_FILE_KINDS = {"p": "a FIFO", "s": "a socket", "c": "a character device", "b": "a block device"}


def _decode(data: bytes) -> dict[str, object]:
    """Fully decode image bytes once and measure them; raises when they are not one complete, intact image."""
    with opened(data) as image:
        image.load()  # a full decode: a truncated file fails here, not at open()
        decoded: dict[str, object] = {Col.WIDTH: image.width, Col.HEIGHT: image.height, Col.FORMAT: image.format}
        decoded.update(measure(image))
        decoded[SIGNATURE], decoded[PART_SIGNATURES] = colour_signatures(image)
        decoded[STRUCTURE] = structure_signature(image)
    with opened(data) as image:
        # Pillow decodes a PNG whose data chunks fail their CRC, but libpng (OpenCV, fastdup) refuses it; verify()
        # checks every chunk, so a damaged file is corrupt for every reader rather than only for some.
        image.verify()
    return decoded


def _read(path: Path) -> tuple[dict[str, object], bytes | None]:
    """A file's record so far (invalid, with the error, when it cannot be read) and its bytes, if read."""
    record: dict[str, object] = {Col.VALID: False}
    if printable(str(path)) != str(path):
        # Training code could not open the manifest's (escaped) path, so the file cannot be curated as is.
        record[Col.ERROR] = "file name is not valid UTF-8 (shown with \\x escapes): rename the file"
        return record, None
    try:
        mode = path.stat().st_mode  # follows a symbolic link: a link to an image is curated like the image
        if not stat.S_ISREG(mode):
            # Never opened: reading a FIFO blocks until some writer appears, and a device may never end.
            kind = _FILE_KINDS.get(stat.filemode(mode)[0], "an unusual file")
            record[Col.ERROR] = f"not a regular file ({kind}): not opened"
            return record, None
        data = path.read_bytes()
    except OSError as error:
        record[Col.ERROR] = f"cannot read file: {error.strerror or error}"
        return record, None
    record[Col.SHA256] = hashlib.sha256(data).hexdigest()
    record[Col.BYTES] = len(data)
    return record, data


def hash_file(path: Path) -> dict[str, object]:
    """Read and hash a file: its sha256 and size, or why it cannot be read. Never raises for a bad file."""
    return _read(path)[0]


def inspect_file(path: Path) -> dict[str, object]:
    """Hash a file, fully decode it once and measure it; never raises for a bad file."""
    record, data = _read(path)
    if data is None:
        return record
    if not data:
        record[Col.ERROR] = "empty file (0 bytes)"
        return record
    try:
        decoded = _decode(data)
    except Exception as error:  # noqa: BLE001 - any decoder failure means the file is unreadable
        record[Col.ERROR] = unreadable_reason(error)
        return record
    record.update(decoded)
    record[Col.VALID] = True
    return record


# What `inspect_file` learns from a file's bytes alone: cached by sha256, so unchanged files are not decoded again.
CONTENT_COLUMNS = [
    Col.VALID, Col.ERROR, Col.WIDTH, Col.HEIGHT, Col.FORMAT,
    Col.BRIGHTNESS, Col.CONTRAST, Col.BLUR, Col.SHARPNESS, Col.FINE_DETAIL, Col.BLACK_LEVEL, SIGNATURE, PART_SIGNATURES,
    STRUCTURE,
]
# Changes whenever the numbers for the same bytes could change: a new measure or decoder, or the pixel limit.
CONTENT_VERSION = f"content 7, Pillow {PIL.__version__}, pixel limit {Image.MAX_IMAGE_PIXELS}"


def _each_file(
    function: Callable[[Path], dict[str, object]], paths: Sequence[Path], stage: str, threads: int | None
) -> list:
    # Hashing and decoding release the GIL in C, so threads overlap I/O and decoding.
    with ThreadPoolExecutor(max_workers=threads or threads_per_chunk(1)) as pool:
        return list(progress(pool.map(function, paths), stage, len(paths), "file"))


def hash_files(paths: Sequence[Path], threads: int | None = None) -> list[dict[str, object]]:
    """`hash_file` for each path, in order, on `threads` threads (one per core by default)."""
    return _each_file(hash_file, paths, "hash", threads)


def inspect_files(paths: Sequence[Path], threads: int | None = None) -> list[dict[str, object]]:
    """`inspect_file` for each path, in order, on `threads` threads (one per core by default)."""
    return _each_file(inspect_file, paths, "decode", threads)


def _records(chunks: list[list[dict[str, object]]], index: Sequence[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame.from_records([record for chunk in chunks for record in chunk], index=index)


FRAME_COLUMNS = [Col.VALID, Col.ERROR, Col.SHA256, Col.BYTES, *CONTENT_COLUMNS[2:]]


def ingest(
    inventory: Inventory,
    cache_dir: Path | None = None,
    run_chunks: ChunkMap = run_here,
    chunk_size: int = 5000,
    concurrent_chunks: int = 1,
) -> pd.DataFrame:
    """Return one row per image file found: row, path, split, label, sha256, bytes, width, height, format,
    valid, error, the image statistics of `tasks.imagestats.measure` and, for verification's candidates, the
    colour and structure signatures of each readable image (columns `tasks.imagestats.SIGNATURE`,
    `PART_SIGNATURES` and `STRUCTURE`, not part of the manifest).

    Every file is hashed; only files whose contents are not in the cache (`cache_dir`) are decoded. Both steps
    run in chunks of at most `chunk_size` files on `run_chunks`, which runs `concurrent_chunks` of them at once;
    they share the cores (`threads_per_chunk`)."""
    paths = [found.path for found in inventory.images]
    threads = threads_per_chunk(concurrent_chunks)

    def in_chunks(stage: str, work: Callable[..., list], items: list[Path]) -> list[list[dict[str, object]]]:
        size = balanced_size(len(items), chunk_size, concurrent_chunks)
        return run_chunks(stage, work, chunked(items, size), threads=threads)

    hashed = _records(in_chunks("hash", hash_files, paths)).reindex(columns=FRAME_COLUMNS)
    keys = hashed.loc[hashed[Col.SHA256].notna(), [Col.SHA256]].rename_axis("position").reset_index()
    cache = ResultCache(Path(cache_dir) / f"content-{settings_digest(CONTENT_VERSION)}.parquet", [Col.SHA256]) \
        if cache_dir else None
    known, todo = cache.split(keys, CONTENT_COLUMNS) if cache else (keys.iloc[0:0], keys)
    positions = todo["position"].tolist()
    decoded = _records(in_chunks("decode", inspect_files, [paths[p] for p in positions]),
                       index=positions).reindex(columns=FRAME_COLUMNS)
    if cache and len(decoded):  # a file that could not be read the second time has no sha256: nothing to cache
        cache.add(decoded[decoded[Col.SHA256].notna()], CONTENT_COLUMNS)
    known = known.set_index("position").drop(columns=Col.SHA256)
    reused = hashed.loc[known.index, [Col.SHA256, Col.BYTES]].join(known)
    untouched = hashed.drop(index=[*known.index, *decoded.index])  # files that could not be read
    parts = [part for part in (untouched, reused, decoded) if len(part)]
    frame = pd.concat(parts).sort_index().reindex(columns=FRAME_COLUMNS)
    frame.insert(0, Col.ROW, range(len(inventory.images)))
    frame.insert(1, Col.PATH, [printable(str(found.path)) for found in inventory.images])
    frame.insert(2, Col.SPLIT, [found.split for found in inventory.images])
    labels = [None if found.label is None else printable(found.label) for found in inventory.images]
    frame.insert(3, Col.LABEL, pd.array(labels, dtype="string"))
    frame[Col.VALID] = frame[Col.VALID].astype(bool)
    for column in (Col.SHA256, Col.ERROR, Col.FORMAT):
        frame[column] = frame[column].astype("string")
    for column in (Col.BYTES, Col.WIDTH, Col.HEIGHT):
        frame[column] = frame[column].astype("float64").astype("Int64")
    for column in (Col.BRIGHTNESS, Col.CONTRAST, Col.BLUR, Col.SHARPNESS, Col.FINE_DETAIL, Col.BLACK_LEVEL):
        frame[column] = frame[column].astype("float64")
    for column in (SIGNATURE, PART_SIGNATURES, STRUCTURE):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    release_free_memory()  # the chunks' records and decoded images
    return frame.reset_index(drop=True)
