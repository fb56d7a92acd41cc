"""The visual report: sections, escaping, pagination and caps on a small real manifest, then a real browser.

The manifest comes from `classify` over hand-made rows (tests/test_classify.py helpers) whose paths are real
JPEGs, so thumbnails are really generated. The browser test opens the report from disk in headless Debian
Chromium and reads back the DOM and a screenshot (kept at $CURATE_REPORT_SCREENSHOT when set, to look at).
"""

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.classify import classify
from tasks.config import CurateConfig
from tasks.expectations import GateResult
from tasks.outputs import summarize
from tasks.report import ReportLimits, write_report
from tasks.schema import Band, Col
from tasks.verify import DUPLICATE, OVERLAP
from tests.test_classify import make_files, make_matches, make_similarity

BANDS = {Band.IDENTICAL: 0.99, Band.NEAR_IDENTICAL: 0.98, Band.SIMILAR: 0.9}
SECTIONS = ["summary", "plots", "duplicates", "clusters", "outliers", "blurry", "bright", "dark", "corrupt",
            "split-leaks", "label-conflicts"]
EVIL = "<script>alert(1)<script>.jpg"  # a legal Linux file name ("/" is not)
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def dataset(tmp_path, texture):
    """A classified manifest where every gallery has members, and its pair similarities."""
    root = tmp_path / "data"
    rows = [
        ("train/cat/a.jpg", "train", "cat", {}),
        ("val/cat/a_copy.jpg", "val", "cat", {}),  # duplicate of a across splits: split leak
        ("train/cat/x.jpg", "train", "cat", {Col.SHA256: "same"}),
        ("train/dog/x.jpg", "train", "dog", {Col.SHA256: "same"}),  # same bytes, other label: conflict
        (f"train/cat/{EVIL}", "train", "cat", {Col.SHARPNESS: -3.0, Col.BLUR: 2.0}),  # blurry
        ("train/dog/dark.jpg", "train", "dog", {Col.BRIGHTNESS: 5.0}),
        ("train/dog/bright.jpg", "train", "dog", {Col.BRIGHTNESS: 250.0, Col.BLACK_LEVEL: 245.0}),
        ("train/dog/odd.jpg", "train", "dog", {}),  # isolated in similarity: outlier
        ("train/cat/t1.jpg", "train", "cat", {}),
        ("train/cat/t2.jpg", "train", "cat", {}),  # overlaps t1
    ]
    rows += [(f"train/dog/n{i}.jpg", "train", "dog", {Col.BRIGHTNESS: 100.0 + 5 * i}) for i in range(8)]
    for i, (name, _, _, _) in enumerate(rows):
        texture(root / name, seed=i)
    corrupt = root / "train" / "cat" / "bad.jpg"
    corrupt.write_bytes(b"not a jpeg")
    records = [{Col.PATH: str(root / name), Col.SPLIT: split, Col.LABEL: label, **extra}
               for name, split, label, extra in rows]
    records.append({Col.PATH: str(corrupt), Col.SPLIT: "train", Col.LABEL: "cat", Col.VALID: False,
                    Col.ERROR: "<b>cannot identify image</b>", Col.WIDTH: None, Col.HEIGHT: None})
    files = make_files(records)
    pairs = [(0, 1, 0.995), (8, 9, 0.93), (4, 5, 0.8), (5, 6, 0.8), (6, 8, 0.8), (7, 9, 0.3)]
    pairs += [(i, i + 1, 0.8) for i in range(10, 17)] + [(2, 10, 0.85), (3, 11, 0.85)]
    similarity = make_similarity(pairs)
    manifest = classify(files, similarity, make_matches([(0, 1, DUPLICATE), (8, 9, OVERLAP)]), CurateConfig())
    summary = summarize(manifest, similarity, BANDS, [], GateResult(success=True, outcomes=[], raw={}))
    return manifest, summary, similarity.pairs["similarity"].to_numpy()


def section(page: str, key: str) -> str:
    """The HTML of one section (sections do not nest)."""
    match = re.search(rf'<section id="{key}">(.*?)</section>', page, re.S)
    assert match, f"section {key} missing"
    return match.group(1)


def test_every_section_is_filled_and_names_are_escaped(tmp_path, dataset):
    manifest, summary, similarities = dataset
    index = write_report(tmp_path / "report", manifest, summary, similarities, BANDS, "Report <b>x</b>")
    page = index.read_text()
    galleries = {key: section(page, key) for key in SECTIONS}
    for key in SECTIONS[2:]:
        assert "None found" not in galleries[key], key
    # Hostile file names, errors and titles are shown as text, never as markup.
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;script&gt;.jpg" in galleries["blurry"]
    assert "<b>" not in page and "&lt;b&gt;cannot identify image&lt;/b&gt;" in galleries["corrupt"]
    # The corrupt file gets its error instead of a thumbnail; every other card has one, named by a hash.
    assert "<img" not in galleries["corrupt"]
    thumbs = sorted(p.name for p in (tmp_path / "report" / "thumbs").iterdir())
    assert thumbs and all(re.fullmatch(r"[0-9a-f]{24}\.jpg", name) for name in thumbs)
    # One thumbnail per readable file shown (the ten above, not the clean n0..n7), each used by the page.
    assert len(thumbs) == 10 and set(re.findall(r'src="thumbs/([^"]+)"', page)) == set(thumbs)
    # Duplicate evidence: the kept file first, then the dropped copy naming it.
    duplicates = galleries["duplicates"]
    assert duplicates.index('class="name">a_copy.jpg') < duplicates.index('class="name">a.jpg')  # val copy kept
    assert "rotate90" in duplicates and "duplicate of" in duplicates and "0.800" in duplicates
    assert "train/dog/x.jpg" in galleries["label-conflicts"] and "a_copy.jpg" in galleries["split-leaks"]
    # Plots: the histogram marks each band threshold; class and split plots are drawn.
    plots = galleries["plots"]
    assert plots.count("<svg") == 3
    assert all(f"{band.value} &gt; {value:g}" in plots for band, value in BANDS.items())
    assert "before curation" in plots and "kept" in plots and "split_leak" in plots


def test_galleries_are_sorted_paginated_and_capped(tmp_path, dataset):
    manifest, summary, similarities = dataset
    blurry = manifest[manifest[Col.PATH].str.contains("script")].iloc[0]
    copies = pd.DataFrame([{**blurry.to_dict(), Col.PATH: f"{blurry[Col.PATH]}#{i}", Col.SHARPNESS: -1.0 - i}
                           for i in range(25)])
    big = pd.concat([manifest.drop(blurry.name), copies], ignore_index=True)
    limits = ReportLimits(page_size=4, max_pages=3, max_thumbnails=5)
    folder = tmp_path / "report"
    page = write_report(folder, big, summary, similarities, BANDS, "t", limits).read_text()
    blurry_html = section(page, "blurry")
    # Blurriest first: copy 24 has the lowest sharpness.
    assert blurry_html.index("#24") < blurry_html.index("#23") and "#21" in blurry_html and "#20" not in blurry_html
    assert "(25 files)" in blurry_html and "Showing the first 12" in blurry_html
    assert sorted(p.name for p in folder.glob("blurry-*.html")) == ["blurry-2.html", "blurry-3.html"]
    assert 'href="blurry-3.html"' in blurry_html
    last = (folder / "blurry-3.html").read_text()
    assert "#13" in last and "#12" not in last and 'href="index.html#blurry"' in last
    # The thumbnail cap holds for the whole report; later cards say so instead.
    assert len(list((folder / "thumbs").iterdir())) == 5
    assert "no thumbnail" in page


def test_empty_similarities_still_render(tmp_path, dataset):
    manifest, summary, _ = dataset
    page = write_report(tmp_path / "r", manifest, summary, np.empty(0), BANDS, "t").read_text()
    assert "No similarity pairs" in section(page, "plots")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0"]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=90,
                          env={**os.environ, "HOME": str(profile)})


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed: `apt-get install -y chromium` "
                    "(make test installs it when run as root)")
def test_report_renders_in_a_real_browser(tmp_path, dataset):
    manifest, summary, similarities = dataset
    index = write_report(tmp_path / "report", manifest, summary, similarities, BANDS, "Curate report: test")
    dom = chromium("--dump-dom", index.as_uri(), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    root = re.search(r"<html[^>]*>", dom.stdout).group(0)
    # The page's own recorder: it ran to the load event, saw no script, console or image-load error, and every
    # thumbnail decoded.
    assert 'data-ready="1"' in root and 'data-errors="0"' in root, root
    images = dom.stdout.count("<img ")
    assert images > 10 and f'data-images-loaded="{images}"' in root, root
    for key in SECTIONS:
        assert f'id="{key}"' in dom.stdout
    assert "<script>alert" not in dom.stdout
    assert not [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]

    screenshot = Path(os.environ.get("CURATE_REPORT_SCREENSHOT", tmp_path / "report.png"))
    shot = chromium(f"--screenshot={screenshot}", "--window-size=1280,2000", index.as_uri(),
                    profile=tmp_path / "profile")
    assert shot.returncode == 0 and screenshot.stat().st_size > 20_000, shot.stderr[-2000:]


def test_thumbnails_made_in_parallel_are_those_made_one_by_one(tmp_path, texture):
    """`prepare` makes, ahead and on threads, exactly what `get` calls in the same order would: the same files,
    the cap counted the same way (a missing file counts and gets no thumbnail, without an error)."""
    from tasks.report import _Thumbnails

    paths = [str(texture(tmp_path / "img" / f"{i}.jpg", seed=i)) for i in range(4)]
    order = [paths[0], str(tmp_path / "img" / "missing.jpg"), paths[0], paths[1], paths[2], paths[3]]
    one_by_one = _Thumbnails(tmp_path / "a", cap=3)
    ahead = _Thumbnails(tmp_path / "b", cap=3)
    for thumbs in (one_by_one, ahead):
        thumbs.folder.mkdir()
    ahead.prepare(iter(order), workers=2)
    assert [one_by_one.get(path) for path in order] == [ahead.get(path) for path in order]
    assert one_by_one.made == ahead.made and list(ahead.made) == order[:2] + [paths[1]]
    assert ahead.made[order[1]] is None and ahead.get(paths[2]) is None  # missing file; then the cap
    files = sorted(p.name for p in one_by_one.folder.iterdir())
    assert files == sorted(p.name for p in ahead.folder.iterdir()) and len(files) == 2
    assert all((one_by_one.folder / f).read_bytes() == (ahead.folder / f).read_bytes() for f in files)
