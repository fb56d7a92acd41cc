"""The bad-input corpus: every awkward file is generated here, and each must give its defined row.

Unreadable content gives a row with `valid=False` and a clear `error` (and, through the flow, `corrupt`); an
unusual but readable image gives a normal valid row; nothing crashes, hangs or loses a row. Non-UTF-8 names,
symbolic-link loops and a folder named like an image are covered in tests/test_ingest.py.
"""

import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import ExifTags, Image

from flows.curate import main
from tasks.imagestats import SIGNATURE
from tasks.ingest import Inventory, find_files, ingest
from tasks.schema import Col
from tests.conftest import write_texture

EXTENSIONS = (".jpg", ".png", ".gif", ".tif")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# How long ingest may take before a test that would otherwise hang on a FIFO fails (see `ingest_or_fail`).
HANG_SECONDS = 20

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def encoded(image: Image.Image, file_format: str, **options: object) -> bytes:
    """`image` saved in `file_format` (a Pillow format name), as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload and a correct CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def declared_png(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes whose header declares `width` x `height` grey pixels: a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (width + 1) * 8)  # 8 rows: Pillow would still allocate and fill them all
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def bad_crc_png(image: Image.Image) -> bytes:
    """A PNG whose pixel data is intact but whose IDAT checksum is wrong (Pillow alone would decode it)."""
    data = bytearray(encoded(image, "PNG"))
    start = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[start - 4 : start])
    data[start + 4 + length] ^= 0xFF  # first byte of the chunk's CRC
    return bytes(data)


def exif_rotated(image: Image.Image) -> bytes:
    """A 96x48 JPEG whose EXIF orientation (6: rotate 90° to view) says it is shown as 48x96."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    return encoded(image.crop((0, 0, 96, 48)), "JPEG", exif=exif)


def sixteen_bit(image: Image.Image) -> Image.Image:
    """The grey version of `image` with 16-bit levels (mode I;16): each 8-bit level times 257, so 255 -> 65535."""
    return Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)


def frames(image: Image.Image, file_format: str) -> bytes:
    """A two-frame animation or two-page file (the second frame differs, so Pillow keeps both)."""
    return encoded(image, file_format, save_all=True, append_images=[image.rotate(90)])


@dataclass(frozen=True)
class Case:
    """One corpus file and the row it must give."""

    name: str
    content: Callable[[Image.Image], bytes]  # the file's bytes, made from a distinct 96x96 texture
    error: str | None = None  # part of the expected error; None for a valid row
    format: str | None = None  # expected `format` of a valid row
    size: tuple[int, int] = (96, 96)  # expected (width, height) of a valid row


CASES = [
    Case("zero bytes.jpg", lambda image: b"", error="empty file (0 bytes)"),
    Case("truncated.jpg", lambda image: encoded(image, "JPEG")[:600], error="truncated"),
    Case("truncated.png", lambda image: encoded(image, "PNG")[:600], error="truncated"),
    Case("random.png", lambda image: np.random.default_rng(7).bytes(3000), error="not an image"),
    Case("text.gif", lambda image: b"GIF? no, a README saved with the wrong name\n", error="not an image"),
    Case("bad crc.png", bad_crc_png, error="checksum"),
    Case("bomb.png", lambda image: declared_png(40_000, 40_000), error="too many pixels"),
    # Between Pillow's limit and twice it, Pillow only warns: ingest must still refuse to decode it.
    Case("bomb 100 megapixels.png", lambda image: declared_png(10_000, 10_000), error="too many pixels"),
    Case("cmyk.jpg", lambda image: encoded(image.convert("CMYK"), "JPEG"), format="JPEG"),
    Case("grey16.png", lambda image: encoded(sixteen_bit(image), "PNG"), format="PNG"),
    Case("grey.png", lambda image: encoded(image.convert("L"), "PNG"), format="PNG"),
    Case("rgba.png", lambda image: encoded(image.convert("RGBA"), "PNG"), format="PNG"),
    Case("palette.png", lambda image: encoded(image.convert("P"), "PNG"), format="PNG"),
    Case("animated.gif", lambda image: frames(image, "GIF"), format="GIF"),
    Case("multipage.tif", lambda image: frames(image, "TIFF"), format="TIFF"),
    # Width and height as stored, as `Image.open` gives them to training code (EXIF orientation not applied).
    Case("exif rotated.jpg", exif_rotated, format="JPEG", size=(96, 48)),
    Case("one pixel.png", lambda image: encoded(image.resize((1, 1)), "PNG"), format="PNG", size=(1, 1)),
    Case("with spaces in it.jpg", lambda image: encoded(image, "JPEG"), format="JPEG"),
    Case("ünïcødé 画像.jpg", lambda image: encoded(image, "JPEG"), format="JPEG"),
    Case("<script>&\"'.jpg", lambda image: encoded(image, "JPEG"), format="JPEG"),
]
LINK = "link to outside.jpg"  # a symbolic link to an image outside the data folder: curated as the link's path
FIFO = "fifo.jpg"  # a FIFO with an image suffix: never opened


def texture_image(folder: Path, seed: int) -> Image.Image:
    """A distinct RGB texture (the conftest JPEG, decoded) to derive a case's file from."""
    with Image.open(write_texture(folder / f"{seed}.jpg", seed=seed)) as image:
        return image.convert("RGB")


def write_corpus(folder: Path, sources: Path) -> dict[str, str | None]:
    """Write every case into `folder`; return file name -> expected error part (None: valid).

    `sources` is outside the data folder: the textures the cases derive from, and the symbolic link's target."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, case in enumerate(CASES, start=100):
        (folder / case.name).write_bytes(case.content(texture_image(sources, seed)))
    (folder / LINK).symlink_to(write_texture(sources / "outside.jpg", seed=99))
    os.mkfifo(folder / FIFO)
    return {case.name: case.error for case in CASES} | {LINK: None, FIFO: "not a regular file (a FIFO)"}


def ingest_or_fail(inventory: Inventory) -> pd.DataFrame:
    """`ingest`, but a regression that opens the FIFO fails the test instead of hanging it."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(ingest, inventory)
    try:
        return future.result(timeout=HANG_SECONDS)
    except FutureTimeout:
        for found in inventory.images:  # a writer that opens and closes ends the blocked read, with no data
            if found.path.is_fifo():
                os.close(os.open(found.path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"ingest did not return within {HANG_SECONDS} s: it opened a FIFO")
    finally:
        pool.shutdown(wait=True)


def test_each_bad_input_gives_its_defined_row(tmp_path):
    """Through find_files and ingest: one row per corpus file, valid with its format and stored size, or
    unreadable with its error and no size."""
    folder = tmp_path / "data" / "train" / "c"
    expected = write_corpus(folder, tmp_path / "sources")
    inventory = find_files({"train": tmp_path / "data" / "train"}, EXTENSIONS)
    frame = ingest_or_fail(inventory).set_index(Col.PATH)

    assert sorted(frame.index) == sorted(str(folder.resolve() / name) for name in expected)
    by_name = {Path(path).name: row for path, row in frame.iterrows()}
    cases = {case.name: case for case in CASES}
    for name, error in expected.items():
        row = by_name[name]
        if error is None:
            assert row[Col.VALID] and pd.isna(row[Col.ERROR]), f"{name}: {row[Col.ERROR]}"
            assert len(row[Col.SHA256]) == 64 and row[Col.LABEL] == "c", name
            assert not pd.isna(row[Col.BRIGHTNESS]) and not pd.isna(row[Col.BLACK_LEVEL]), name
        else:
            assert not row[Col.VALID] and error.lower() in row[Col.ERROR].lower(), f"{name}: {row[Col.ERROR]}"
            assert pd.isna(row[Col.WIDTH]) and pd.isna(row[Col.FORMAT]), f"{name}: a failed decode leaves no size"
        if name in cases and error is None:
            assert row[Col.FORMAT] == cases[name].format, name
            assert (row[Col.WIDTH], row[Col.HEIGHT]) == cases[name].size, name
    # The link keeps its own path (asserted above with the folder's paths) and is hashed as its target.
    assert by_name[LINK][Col.BYTES] == (tmp_path / "sources" / "outside.jpg").stat().st_size
    assert pd.isna(by_name[FIFO][Col.SHA256]), "the FIFO must not be read"


def test_sixteen_bit_levels_are_scaled_not_clipped(tmp_path):
    """A 16-bit image measures like its 8-bit twin; clipped at 255, it would look white (and `bright`)."""
    picture = texture_image(tmp_path / "sources", seed=1).convert("L")
    (tmp_path / "train").mkdir()
    picture.save(tmp_path / "train" / "grey8.png")
    sixteen_bit(picture).save(tmp_path / "train" / "grey16.png")
    rows = ingest(find_files({"train": tmp_path / "train"}, EXTENSIONS)).set_index(Col.PATH)
    grey8, grey16 = (rows.loc[str(tmp_path / "train" / name)] for name in ("grey8.png", "grey16.png"))
    for column in (Col.BRIGHTNESS, Col.CONTRAST, Col.BLACK_LEVEL, Col.BLUR):
        assert grey16[Col.VALID] and grey16[column] == pytest.approx(grey8[column], rel=0.01, abs=0.5), column
    assert np.dot(grey16[SIGNATURE], grey8[SIGNATURE]) > 0.99


COPY_GIF = "copy of texture 0.gif"  # a GIF re-encoding of an ordinary image, in the flow test


def layout(data: Path, sources: Path) -> dict[Path, str | None]:
    """The corpus in train/c (a single-class split) with 6 ordinary images and a GIF copy of the first, 3 ordinary
    images each in val/a and val/b (fastdup needs at least 10 readable images), and an empty test split.
    Returns path -> expected error part (None: valid)."""
    folder = data.resolve() / "train" / "c"
    expected = {folder / name: error for name, error in write_corpus(folder, sources).items()}
    for seed, split_folder in enumerate(["train/c"] * 6 + ["val/a"] * 3 + ["val/b"] * 3):
        expected[write_texture(data.resolve() / split_folder / f"texture {seed}.jpg", seed=seed)] = None
    with Image.open(folder / "texture 0.jpg") as original:
        original.save(folder / COPY_GIF)
    expected[folder / COPY_GIF] = None
    (data / "test").mkdir()
    return expected


@pytest.mark.slow
def test_the_whole_corpus_through_the_flow(tmp_path):
    """One real run: every corpus file beside ordinary images, in a single-class split, a two-class split and an
    empty split. The run completes, every file found has one row, and unreadable files are dropped as corrupt."""
    data = tmp_path / "data"
    expected = {str(path): error for path, error in layout(data, tmp_path / "sources").items()}
    out = tmp_path / "out"
    status = main([*(arg for split in ("train", "val", "test") for arg in ("--split", f"{split}={data / split}")),
                   "--out", str(out), "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert status in (0, 1), "a bad input must never be a usage error (2) or a crash (3)"

    manifest = pd.read_parquet(out / "manifest.parquet").set_index(Col.PATH)
    assert sorted(manifest.index) == sorted(expected), "exactly one row per file found"
    for path, error in expected.items():
        row = manifest.loc[path]
        issues = set(row[Col.ISSUES])
        context = f"{Path(path).name}: {row[Col.ACTION]} {sorted(issues)} {row[Col.ERROR]}"
        if error is None:
            assert row[Col.VALID] and "corrupt" not in issues, context
        else:
            assert not row[Col.VALID] and error.lower() in row[Col.ERROR].lower(), context
            assert "corrupt" in issues and row[Col.ACTION] == "drop", context

    summary = json.loads((out / "summary.json").read_text())
    # fastdup reads the 16-bit, CMYK, grey, RGBA, palette, multi-page TIFF and EXIF-rotated files, and the GIFs
    # as PNGs that Pillow decoded for it, but no 1x1 image (ERROR_IMAGE_TOO_SMALL). That one stays valid, without
    # a nearest neighbour, and is counted as not analysed rather than marked corrupt.
    readable = manifest[manifest[Col.VALID]]
    unanalysed = {Path(path).name for path in readable.index[readable[Col.NN_PATH].isna()]}
    assert unanalysed == {"one pixel.png"}
    assert summary["similarity"]["skipped"] is None and summary["similarity"]["not_analysed"] == len(unanalysed)
    # Their copies are still found: their colour signatures come from ingest, and verification decides.
    folder = data.resolve() / "train" / "c"
    copy, original = manifest.loc[str(folder / COPY_GIF)], manifest.loc[str(folder / "texture 0.jpg")]
    assert pd.notna(copy[Col.DUP_GROUP]) and copy[Col.DUP_GROUP] == original[Col.DUP_GROUP]
    # One of the two is dropped as a duplicate of the other, which is kept (or, if an outlier, sent to review).
    dropped, kept = (copy, original) if copy[Col.ACTION] == "drop" else (original, copy)
    assert dropped[Col.DUPLICATE_OF] == kept.name and kept[Col.ACTION] != "drop"
    # An empty split folder beside non-empty ones: the run proceeds, and the split has no rows, no entry in
    # summary.json's splits and no cleaned split file.
    assert set(summary["splits"]) == {"train", "val"} and summary["files"] == len(expected)
    assert not (out / "splits" / "test.parquet").exists() and (out / "splits" / "val.parquet").is_file()
    # A split with a single class is curated like any other: its label keeps files, so the gate's check passes.
    assert set(manifest.loc[manifest[Col.SPLIT] == "train", Col.LABEL]) == {"c"}
    gate = json.loads((out / "quality" / "expectations.json").read_text())
    assert {item["name"]: item["success"] for item in gate["expectations"]}["labels_kept"]
