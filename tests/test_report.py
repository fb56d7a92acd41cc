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
from PIL import Image

from tasks.config import CurateConfig
from tasks.expectations import GateResult
from tasks.geometry import shared_regions
from tasks.outputs import summarize
from tasks.report import ReportLimits, write_report
from tasks.schema import Band, Col, MatchCol, PairCol
from tests.test_classify import DUPLICATE, OVERLAP, classify_with_pairs, make_files, make_matches, make_similarity

BANDS = {Band.IDENTICAL: 0.99, Band.NEAR_IDENTICAL: 0.98, Band.SIMILAR: 0.9}
SECTIONS = ["summary", "plots", "duplicates", "overlaps", "clusters", "outliers", "blurry", "bright", "dark",
            "corrupt", "split-leaks", "label-conflicts"]
EVIL = "<script>alert(1)<script>.jpg"  # a legal Linux file name ("/" is not)
EVIL_PAIR = "<img src=x onerror=alert(2)>'\".jpg"  # the training side of a leak: shown in the pair galleries
EVIL_PAIR_HTML = "&lt;img src=x onerror=alert(2)&gt;&#x27;&quot;.jpg"
# From v1 (a) to the evil tile (b): b lies half a width right of a and a quarter height above it, so they share
# a's top right and b's bottom left, 3/8 of each: an overlap (below decisions.duplicate_share).
SHIFTED = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, 0.25], [0.0, 0.0, 1.0]])
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def dataset(tmp_path, texture):
    """A classified manifest where every gallery has members, its related pairs, its summary and its pair
    similarities."""
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
    rows += [
        ("val/cat/v1.jpg", "val", "cat", {}),
        (f"train/cat/{EVIL_PAIR}", "train", "cat", {Col.WIDTH: 96, Col.HEIGHT: 48}),  # overlaps v1 (SHIFTED): leak
        ("unlabeled/u1.jpg", "unlabeled", None, {}),  # overlaps n0: across splits, both training, no action
        ("val/dog/v2.jpg", "val", "dog", {Col.SHA256: "v2"}),
        # Same bytes as v2, so dropped as its copy; same bytes are not composed with other relations, so t3, which
        # overlaps v2_copy only, leaks into v2 with no pair of the two in pairs.
        ("val/dog/v2_copy.jpg", "val", "dog", {Col.SHA256: "v2"}),
        ("train/dog/t3.jpg", "train", "dog", {}),
    ]
    for i, (name, _, _, extra) in enumerate(rows):
        texture(root / name, seed=i)
        if Col.HEIGHT in extra:  # a wide image, so that the drawing must follow where it is fitted in the box
            with Image.open(root / name) as image:
                wide = image.crop((0, 0, extra[Col.WIDTH], extra[Col.HEIGHT]))
            wide.save(root / name)
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
    # No file has two verified relations: relations composed through one (tasks.relations) would join more pairs.
    matches = make_matches([(0, 1, DUPLICATE), (8, 9, OVERLAP), (18, 19, OVERLAP), (10, 20, OVERLAP),
                            (22, 23, OVERLAP)])
    matches.at[2, MatchCol.A_TO_B] = SHIFTED.ravel()  # the third match: v1 ~ the evil tile
    matches.loc[2, [MatchCol.SHARE_A, MatchCol.SHARE_B]] = 0.375
    manifest, pairs = classify_with_pairs(files, similarity, matches, CurateConfig())
    summary = summarize(manifest, pairs, similarity, BANDS, [], GateResult(success=True, outcomes=[], raw={}))
    return manifest, pairs, summary, similarity.pairs["similarity"].to_numpy()


def section(page: str, key: str) -> str:
    """The HTML of one section (sections do not nest)."""
    match = re.search(rf'<section id="{key}">(.*?)</section>', page, re.S)
    assert match, f"section {key} missing"
    return match.group(1)


def pair_items(html: str) -> list[tuple[str, list[tuple[str, np.ndarray | None]]]]:
    """The pair items of a section: each one's caption and, for each card, its file name (as escaped in the page)
    and the points of the polygon drawn on its thumbnail (N x 2), or None."""
    items = []
    for chunk in html.split('<div class="group pairs">')[1:]:
        cards = []
        for card in chunk.split("<figure")[1:]:
            points = re.search(r'<polygon points="([^"]*)"', card)
            cards.append((re.search(r'class="name">([^<]*)<', card).group(1), None if points is None else
                          np.array([[float(v) for v in point.split(",")] for point in points.group(1).split()])))
        items.append((re.search(r"<h3>(.*?)</h3>", chunk).group(1), cards))
    return items


def same_polygon(drawn: np.ndarray | None, expected: np.ndarray) -> bool:
    """The same corners, in any order and from any start (to the 0.1 px the page prints)."""
    return drawn is not None and drawn.shape == expected.shape and np.allclose(
        np.array(sorted(map(tuple, drawn))), np.array(sorted(map(tuple, expected))), atol=0.06)


def test_pairs_are_shown_side_by_side_with_the_shared_region_drawn_where_geometry_puts_it(tmp_path, dataset):
    manifest, pairs, summary, similarities = dataset
    page = write_report(tmp_path / "report", manifest, pairs, summary, similarities, BANDS, "t").read_text()
    path = {p.split("/data/", 1)[1]: p for p in manifest[Col.PATH]}  # full path by the path below data/
    region_v1, region_evil = shared_regions(SHIFTED)  # v1 is the pair's a (the lower row)
    # v1 is square (100 x 100 in the manifest): it fills the 128 px box. The evil tile is 96 x 48: fitted to
    # 128 x 64, centred 32 px down. So v1 shows the top right, the tile its bottom left.
    v1_drawn, evil_drawn = region_v1 * 128, region_evil * [128, 64] + [0, 32]
    assert same_polygon(v1_drawn, np.array([[64, 0], [128, 0], [128, 96], [64, 96]]))
    assert same_polygon(evil_drawn, np.array([[0, 48], [64, 48], [64, 96], [0, 96]]))

    # Overlaps: across splits first, the larger share first, then by path; the one within a split last.
    overlaps = pair_items(section(page, "overlaps"))
    assert [[name for name, _ in cards] for _, cards in overlaps] == [
        ["v1.jpg", EVIL_PAIR_HTML], ["n0.jpg", "u1.jpg"], ["v2_copy.jpg", "t3.jpg"], ["t1.jpg", "t2.jpg"]]
    caption, ((_, v1_points), (_, evil_points)) = overlaps[0]
    assert caption == f"overlap: 38 % of v1.jpg, 38 % of {EVIL_PAIR_HTML} · shift · keypoints 0.80 · across splits"
    assert same_polygon(v1_points, v1_drawn) and same_polygon(evil_points, evil_drawn)
    assert overlaps[3][0] == "overlap: 30 % of t1.jpg, 30 % of t2.jpg · shift · keypoints 0.80"
    assert all(points is not None for _, cards in overlaps for _, points in cards)

    # Split leaks: the training file first, beside the evaluation file it leaks into, grouped by that file.
    leaks_html = section(page, "split-leaks")
    leaks = pair_items(leaks_html)
    assert [[name for name, _ in cards] for _, cards in leaks] == [
        ["a.jpg", "a_copy.jpg"], [EVIL_PAIR_HTML, "v1.jpg"], ["t3.jpg", "v2.jpg"]]
    caption, ((_, evil_points), (_, v1_points)) = leaks[1]
    assert caption.startswith(f"{EVIL_PAIR_HTML} (train) dropped: shares ground with {path['val/cat/v1.jpg']} (val)")
    assert caption.endswith(f"overlap: 38 % of {EVIL_PAIR_HTML}, 38 % of v1.jpg · shift · keypoints 0.80")
    assert same_polygon(evil_points, evil_drawn) and same_polygon(v1_points, v1_drawn)
    assert leaks[0][0].startswith(f"a.jpg (train) dropped: shares ground with {path['val/cat/a_copy.jpg']} (val) · "
                                  "duplicate: 100 % of a.jpg, 100 % of a_copy.jpg")
    # t3 overlaps only v2's dropped copy: no pair of t3 and v2 to draw, and the caption says which copy it was.
    caption, cards = leaks[2]
    assert caption == (f"t3.jpg (train) dropped: shares ground with {path['val/dog/v2.jpg']} (val) through its "
                       f"dropped copy {path['val/dog/v2_copy.jpg']} · overlap: 30 % of t3.jpg, 30 % of v2_copy.jpg"
                       " · shift · keypoints 0.80 · no pair of these two in pairs.parquet, so nothing is drawn")
    assert [points for _, points in cards] == [None, None]
    assert "(3 training files)" in leaks_html and "needed no action: 1." in leaks_html  # n0 (train) ~ u1 (unlabeled)
    assert f"<dt>leaks into</dt><dd>{path['val/cat/v1.jpg']}</dd>" in leaks_html
    # The hostile name stays text in both pair galleries: in the caption (twice in a leak's), the card's name, its
    # title and its thumbnail's alt text.
    assert "<img src=x" not in page and "alert(2)>" not in page
    assert section(page, "overlaps").count(EVIL_PAIR_HTML) == 4 and leaks_html.count(EVIL_PAIR_HTML) == 5

    # Duplicate sets: on the dropped copy, the region it shares with the kept file, and the relation in words.
    duplicates = section(page, "duplicates")
    kept, copy = duplicates.split('<div class="group groups">')[1].split("<figure")[1:]
    assert 'class="name">a_copy.jpg' in kept and "<svg" not in kept
    assert 'class="name">a.jpg' in copy and "duplicate: 100 % of a.jpg, 100 % of a_copy.jpg · rotate90" in copy
    assert '<polygon points="0.0,0.0 128.0,0.0 128.0,128.0 0.0,128.0"/>' in copy


def test_the_summary_shows_relations_and_split_leaks_as_summary_json_counts_them(tmp_path, dataset):
    manifest, pairs, summary, similarities = dataset
    html = section(write_report(tmp_path / "r", manifest, pairs, summary, similarities, BANDS, "t").read_text(),
                   "summary")
    for caption, key in (("Distinct image pairs by relation", "relations"), ("Split leaks by action", "split_leaks")):
        table = re.search(rf"<h3>{caption}</h3>(.*?)</table>", html, re.S).group(1)
        rows = {name: value for name, value in summary[key].items() if name != "note"}
        assert table.count("<tr>") == len(rows) + 1
        for name, value in rows.items():
            assert (f'<tr><td>{name}</td><td class="n">{value["count"]:,}</td><td class="n">{value["of"]:,}</td>'
                    f'<td class="n">{value["share"]:.2%}</td></tr>') in table
        assert summary[key]["note"] in html.replace("&#x27;", "'")
    assert summary["relations"]["overlap"]["count"] == 4 and summary["split_leaks"]["drop"]["count"] == 3


def test_every_section_is_filled_and_names_are_escaped(tmp_path, dataset):
    manifest, pairs, summary, similarities = dataset
    index = write_report(tmp_path / "report", manifest, pairs, summary, similarities, BANDS, "Report <b>x</b>")
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
    # One thumbnail per readable file shown (all but the clean n1..n7), each used by the page.
    assert len(thumbs) == 17 and set(re.findall(r'src="thumbs/([^"]+)"', page)) == set(thumbs)
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
    manifest, pairs, summary, similarities = dataset
    blurry = manifest[manifest[Col.PATH].str.contains("script")].iloc[0]
    copies = pd.DataFrame([{**blurry.to_dict(), Col.PATH: f"{blurry[Col.PATH]}#{i}", Col.SHARPNESS: -1.0 - i}
                           for i in range(25)])
    big = pd.concat([manifest.drop(blurry.name), copies], ignore_index=True)
    limits = ReportLimits(page_size=4, max_pages=3, max_thumbnails=5)
    folder = tmp_path / "report"
    page = write_report(folder, big, pairs, summary, similarities, BANDS, "t", limits).read_text()
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


def test_pair_galleries_are_paginated_and_capped_by_cards(tmp_path, dataset):
    """A pair is two cards: 4 cards a page make 2 pairs a page, 3 pages 6 pairs. The thumbnail cap still holds."""
    manifest, pairs, summary, similarities = dataset
    inside = pairs[pairs[PairCol.PATH_A].str.endswith("t1.jpg") & pairs[PairCol.PATH_B].str.endswith("t2.jpg")]
    assert len(inside) == 1
    pair, ends = inside.iloc[0], manifest[manifest[Col.PATH].str.contains("/t[12].jpg$")]
    # 25 more overlaps within train, larger the later: copy 24 shares 34 % of each, more than t1 and t2 (30 %).
    more = pd.DataFrame([{**pair.to_dict(), PairCol.PATH_A: f"{pair[PairCol.PATH_A]}#{i}",
                          PairCol.PATH_B: f"{pair[PairCol.PATH_B]}#{i}", PairCol.SHARE_A: 0.1 + 0.01 * i,
                          PairCol.SHARE_B: 0.1 + 0.01 * i} for i in range(25)])
    copies = pd.DataFrame([{**row, Col.PATH: f"{row[Col.PATH]}#{i}"} for i in range(25)
                           for row in ends.to_dict("records")])
    limits = ReportLimits(page_size=4, max_pages=3, max_thumbnails=5)
    folder = tmp_path / "report"
    page = write_report(folder, pd.concat([manifest, copies], ignore_index=True), pd.concat([pairs, more]), summary,
                        similarities, BANDS, "t", limits).read_text()
    overlaps = section(page, "overlaps")
    assert "(29 pairs)" in overlaps and "Showing the first 6; pairs.parquet lists them all." in overlaps
    assert sorted(p.name for p in folder.glob("overlaps-*.html")) == ["overlaps-2.html", "overlaps-3.html"]
    names = [[[name for name, _ in cards] for _, cards in pair_items(section((folder / name).read_text(), "overlaps"))]
             for name in ("index.html", "overlaps-2.html", "overlaps-3.html")]
    # The three across splits first, then the largest shares within train; t1 ~ t2 itself (30 %) is not reached.
    assert names == [[["v1.jpg", EVIL_PAIR_HTML], ["n0.jpg", "u1.jpg"]], [["v2_copy.jpg", "t3.jpg"],
                     ["t1.jpg#24", "t2.jpg#24"]], [["t1.jpg#23", "t2.jpg#23"], ["t1.jpg#22", "t2.jpg#22"]]]
    # Three leaks of two cards each: two pages.
    assert sorted(p.name for p in folder.glob("split-leaks-*.html")) == ["split-leaks-2.html"]
    assert len(list((folder / "thumbs").iterdir())) == 5 and "no thumbnail" in overlaps


def test_empty_similarities_still_render(tmp_path, dataset):
    manifest, pairs, summary, _ = dataset
    page = write_report(tmp_path / "r", manifest, pairs, summary, np.empty(0), BANDS, "t").read_text()
    assert "No similarity pairs" in section(page, "plots")


# Opens report/index.html in a frame and, once it has loaded, notes for each `svg polygon` whether it is an SVG
# element, has an area on screen, and lies within the box of the thumbnail it is drawn over.
PROBE = """<!doctype html><html><body><iframe id="report" src="report/index.html" width="1280" height="2000"></iframe>
<script>document.getElementById("report").addEventListener("load", function () {
  var seen = [].map.call(this.contentDocument.querySelectorAll("svg polygon"), function (polygon) {
    var box = polygon.getBoundingClientRect();
    var image = polygon.ownerSVGElement.parentNode.querySelector("img").getBoundingClientRect();
    return [polygon instanceof this.contentWindow.SVGPolygonElement ? "svg" : "html",
            box.width > 0 && box.height > 0 ? "drawn" : "empty",
            box.left >= image.left - 1 && box.right <= image.right + 1 && box.top >= image.top - 1
              && box.bottom <= image.bottom + 1 ? "on-image" : "off-image"].join();
  }, this);
  document.body.dataset.polygons = seen.join(" ");
});</script></body></html>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0"]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=90,
                          env={**os.environ, "HOME": str(profile)})


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed: `apt-get install -y chromium` "
                    "(make test installs it when run as root)")
def test_report_renders_in_a_real_browser(tmp_path, dataset):
    manifest, pairs, summary, similarities = dataset
    index = write_report(tmp_path / "report", manifest, pairs, summary, similarities, BANDS, "Curate report: test")
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
    polygons = dom.stdout.count("<polygon ")
    assert polygons > 0 and polygons == index.read_text().count("<polygon ")
    assert "<script>alert" not in dom.stdout
    assert not [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]

    # Laid out: a page that frames the report measures each `svg polygon` (an SVG element, drawn with an area) and
    # the thumbnail under it, and writes what it saw into its own DOM.
    probe = tmp_path / "probe.html"
    probe.write_text(PROBE)
    laid_out = chromium("--allow-file-access-from-files", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    seen = re.search(r'data-polygons="([^"]*)"', laid_out.stdout)
    assert seen, laid_out.stdout[-2000:]
    assert seen.group(1).split() == ["svg,drawn,on-image"] * polygons

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


def test_files_moved_between_splits_are_shown_with_their_set_and_counted(tmp_path, texture):
    """With reassign, a val tile overlapping two train tiles goes to train: the moved-sets gallery shows the three
    together and says where they were written; the summary table counts the move."""
    from tasks.config import apply_assignments, parse_config

    names = [("train", "a.jpg"), ("train", "b.jpg"), ("val", "c.jpg")]
    records = [{Col.PATH: str(texture(tmp_path / split / "x" / name, seed=i)), Col.SPLIT: split, Col.LABEL: "x"}
               for i, (split, name) in enumerate(names)]
    records += [{Col.PATH: str(texture(tmp_path / "val" / "x" / f"n{i}.jpg", seed=10 + i)), Col.SPLIT: "val",
                 Col.LABEL: "x"} for i in range(3)]
    files = make_files(records)
    config = parse_config(apply_assignments({}, ["decisions.split_leak=reassign"]))
    similarity = make_similarity([])
    manifest, pairs = classify_with_pairs(files, similarity, make_matches([(0, 1, OVERLAP), (1, 2, OVERLAP)]), config)
    summary = summarize(manifest, pairs, similarity, BANDS, [], GateResult(success=True, outcomes=[], raw={}))
    page = write_report(tmp_path / "report", manifest, pairs, summary, np.empty(0), BANDS, "t").read_text()

    moved = section(page, "moved")
    assert "3 files written to train, from train (2), val (1)" in moved
    assert all(name in moved for _, name in names) and "moved to" in moved
    assert "val -&gt; train" in section(page, "summary")
    assert summary["moved"]["all"]["count"] == 1
