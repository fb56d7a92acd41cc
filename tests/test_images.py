"""The one decode policy (`tasks.images`) and the default image suffixes: every raster format Pillow opens."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.images import eight_bit, image_suffixes, load_reduced, opened, unreadable_reason
from tasks.ingest import find_files, ingest
from tasks.schema import Col
from tasks.similarity import FastdupEngine

# Formats Pillow writes as well as reads, by suffix; the mode each needs.
WRITTEN = {".ppm": "RGB", ".pgm": "L", ".pbm": "1", ".jp2": "RGB", ".tga": "RGB", ".pcx": "RGB", ".ico": "RGB",
           ".sgi": "RGB", ".im": "RGB", ".dib": "RGB", ".xbm": "1", ".gif": "P", ".bmp": "RGB", ".webp": "RGB"}


def texture(seed: int, mode: str) -> Image.Image:
    coarse = np.random.default_rng(seed).integers(0, 255, size=(12, 12, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((96, 96), Image.BICUBIC).convert(mode)


def test_default_suffixes_are_the_raster_formats_pillow_decodes():
    suffixes = set(image_suffixes())
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".gif", ".bmp"} <= suffixes
    assert set(WRITTEN) <= suffixes and {".pnm", ".j2k", ".psd", ".qoi"} <= suffixes
    # PostScript needs Ghostscript, MPEG is only identified, PDF is written but never read.
    assert not {".eps", ".ps", ".mpg", ".pdf", ".h5", ".txt"} & suffixes


def test_every_format_pillow_decodes_is_curated_by_default_and_other_files_counted(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for seed, (suffix, mode) in enumerate(WRITTEN.items()):
        texture(seed, mode).save(folder / f"image{suffix}")
    (folder / "notes.txt").write_text("counted, not curated")
    (folder / "scan.eps").write_text("%!PS-Adobe-3.0 EPSF-3.0\n")

    inventory = find_files({"train": folder})
    assert sorted(path.name for path in inventory.ignored) == ["notes.txt", "scan.eps"]
    frame = ingest(inventory)
    assert sorted(Path(path).suffix for path in frame[Col.PATH]) == sorted(WRITTEN)
    assert frame[Col.VALID].all(), frame.loc[~frame[Col.VALID], [Col.PATH, Col.ERROR]]


@pytest.mark.slow
def test_fastdup_embeds_formats_it_cannot_read_from_a_png_that_pillow_decoded(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for seed, suffix in enumerate([".tga", ".gif", ".pcx", ".dib", ".jpg", ".png"] * 2):
        paths.append(folder / f"{seed}{suffix}")
        texture(seed, "P" if suffix == ".gif" else "RGB").save(paths[-1])
    embedded = FastdupEngine().embed(paths, tmp_path / "work")
    assert embedded.failed == {} and sorted(embedded.positions) == list(range(len(paths)))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_one_policy_says_why_and_later_readers_get_none(tmp_path, monkeypatch):
    text = tmp_path / "text.png"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.png"
    texture(1, "RGB").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    assert load_reduced(text, "L", 64) is None and load_reduced(truncated, "RGB", 64) is None
    assert load_reduced(tmp_path / "missing.png", "RGB", 64) is None
    with pytest.raises(Exception) as raised, opened(text.read_bytes()):
        pass
    assert unreadable_reason(raised.value) == "not an image in a format Pillow can read"

    large = tmp_path / "large.png"
    texture(2, "RGB").save(large)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 96 * 96 - 1)  # Pillow alone only warns below twice its limit
    with pytest.raises(Image.DecompressionBombError) as raised, opened(large):
        pass
    assert unreadable_reason(raised.value).startswith("too many pixels to decode safely")
    assert load_reduced(large, "RGB", 64) is None


def test_sixteen_bit_levels_are_scaled_not_clipped():
    levels = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    image = Image.fromarray(levels).convert("I;16")
    assert np.asarray(eight_bit(image)).tolist() == [[0, 100, 255]]
