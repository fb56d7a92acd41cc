"""The review page (report/review.html): which files get cards and what they say, then a real browser.

The browser tests drive Debian's Chromium (/usr/bin/chromium) through Playwright (`executable_path`: Playwright's own
browser download is never used). The round trip runs the real flow on the demo dataset with a hostile file name,
decides cards by key and by click, reloads, downloads overrides.csv, runs the flow again with it and compares the two
manifests. The 3,000-card test measures the render time that docs/BENCHMARKS.md records; it prints its figures and
writes them to $CURATE_REVIEW_BENCH when set.
"""

import importlib.util
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.config import CurateConfig
from tasks.overrides import read_overrides
from tasks.review_page import review_rows, shown_path, split_roots, write_review_page
from tasks.schema import Col
from tests.conftest import split_args
from tests.test_classify import OVERLAP, classify_with_pairs, make_files, make_matches, make_similarity

CHROMIUM = Path("/usr/bin/chromium")
needs_browser = pytest.mark.skipif(
    not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None,
    reason="needs Debian chromium (`make chromium`, as root: apt-get install -y chromium) and Playwright "
    "(requirements-dev.txt); `make test` installs both",
)
HOSTILE = "<img src=x onerror=alert(1)>'\",.jpg"  # markup, both quotes and a comma: HTML and CSV escaping


@contextmanager
def chromium_page(downloads: bool = False):
    """A page of a fresh headless Chromium context, recording script errors, console errors and dialogs (an
    injected alert() would open one) into `page.problems`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        try:
            context = browser.new_context(accept_downloads=downloads, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.problems = []
            page.on("pageerror", lambda error: page.problems.append(f"error: {error}"))
            page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
            page.on("dialog", lambda dialog: (page.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
            yield page
        finally:
            browser.close()


def card_states(page) -> list[tuple[str, str]]:
    """Each card's shown path and decision ("" when undecided), in page order."""
    return page.eval_on_selector_all(
        "#cards .rcard", "cards => cards.map(c => [c.querySelector('.name').textContent, c.dataset.decision || ''])")


def progress(page) -> str:
    return page.inner_text("#progress")


# ---------------------------------------------------------------- without a browser


def manifest_of(records: list[dict], matches=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = make_files(records)
    return classify_with_pairs(files, make_similarity([]), make_matches(list(matches)), CurateConfig())


@pytest.mark.parametrize("files, root", [
    ([("/d/train/cat/a.jpg", "cat"), ("/d/train/dog/b.jpg", "dog")], "/d/train"),
    ([("/d/train/cat/a.jpg", "cat"), ("/d/train/cattle/b.jpg", "cattle")], "/d/train"),  # one label prefixes another
    ([("/d/train/cat/x/a.jpg", "cat"), ("/d/train/cat/y/b.jpg", "cat")], "/d/train"),  # one label, nested folders
    ([("/d/cat/train/cat/a.jpg", "cat")], "/d/cat/train"),  # the label's name higher up too
    ([("/d/u/sub/b.jpg", "sub"), ("/d/u/a.jpg", None)], "/d/u"),  # a file at the top has no label
])
def test_split_folders_are_found_from_paths_and_labels(files, root):
    manifest = make_files([{Col.PATH: path, Col.SPLIT: "s", Col.LABEL: label} for path, label in files])
    roots = split_roots(manifest)
    assert roots == {"s": root}
    assert shown_path(files[0][0], "s", roots) == f"s: {files[0][0][len(root) + 1:]}"


def test_cards_wait_first_then_requested_then_decided(tmp_path):
    manifest, _ = manifest_of([{Col.PATH: f"/d/t/x/{name}.jpg", Col.SPLIT: "t", Col.LABEL: "x"}
                               for name in "abcde"])
    manifest.loc[[3, 1], Col.ACTION] = "review"
    manifest.loc[[3, 1], Col.REASON] = "review: outlier"
    manifest.loc[0, [Col.ACTION, Col.REASON]] = ["drop", "reviewer: drop (Curate: review: outlier)"]
    rows = review_rows(manifest, extra=["/d/t/x/e.jpg", "/d/t/x/b.jpg", "/d/t/x/c.jpg", "/d/t/x/e.jpg"])
    assert [path.rsplit("/", 1)[1] for path in rows[Col.PATH]] == ["b.jpg", "d.jpg", "e.jpg", "c.jpg", "a.jpg"]


def test_the_page_escapes_names_and_carries_exact_paths_as_inert_json(tmp_path, texture):
    names = [HOSTILE, "line\nbreak.jpg", "plain.jpg"]
    records = [{Col.PATH: str(texture(tmp_path / "data" / "t" / "x" / name, seed=i)), Col.SPLIT: "t",
                Col.LABEL: "x"} for i, name in enumerate(names)]
    records += [{Col.PATH: str(texture(tmp_path / "data" / "t" / "x" / f"n{i}.jpg", seed=10 + i)), Col.SPLIT: "t",
                 Col.LABEL: "x"} for i in range(3)]
    manifest, pairs = manifest_of(records, [(0, 1, OVERLAP)])
    manifest.loc[:2, [Col.ACTION, Col.REASON]] = ["review", "review: outlier"]
    page, cards = write_review_page(tmp_path / "report", manifest, pairs, "Report <b>")
    html = page.read_text()
    assert cards == 3 and "<img src=x" not in html and "<b>" not in html
    assert html.count('class="name">t: x/&lt;img src=x onerror=alert(1)&gt;&#x27;&quot;,.jpg</h3>') == 1
    data = json.loads(re.search(r'<script type="application/json" id="review-data">(.*?)</script>', html,
                                re.S).group(1))
    assert data["paths"] == [record[Col.PATH] for record in records[:3]] and data["initial"] == [None] * 3
    # The overlap between the first two is drawn on both cards' pictures; previews are named by hash.
    assert html.count("<polygon") == 4
    assert all(re.fullmatch(r"[0-9a-f]{24}\.jpg", p.name) for p in (tmp_path / "report" / "previews").iterdir())


def test_the_written_csv_format_is_what_decisions_overrides_reads(tmp_path):
    """The page quotes a field holding a comma, a quote or a line break and doubles its quotes (review_page.js,
    csvField): such a file reads back to the exact paths."""
    paths = [f"/d/t/{HOSTILE}", "/d/t/line\nbreak.jpg", "/d/t/cr\r.jpg", "/d/t/sep\u2028.jpg", "/d/t/plain.jpg"]

    def field(text: str) -> str:  # the page's rule, written again here to pin it down
        return '"' + text.replace('"', '""') + '"' if re.search(r'[",\r\n]', text) or text != text.strip() else text

    (tmp_path / "o.csv").write_bytes(("path,action\n" + "".join(f"{field(p)},keep\n" for p in paths)).encode())
    assert read_overrides(tmp_path / "o.csv") == {path: "keep" for path in paths}


# ---------------------------------------------------------------- in Chromium


@pytest.mark.slow
@needs_browser
def test_review_round_trip_in_the_browser(demo, tmp_path):
    from flows.curate import main

    root = tmp_path / "data"
    shutil.copytree(demo[0], root)
    hostile = root / "unlabeled" / HOSTILE
    (root / "unlabeled" / "tile_0011.jpg").rename(hostile)  # an out-of-place tile: Curate sends it to review
    common = [*split_args(root), "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "decisions.split_leak=review"]
    assert main([*common, "--out", str(tmp_path / "first")]) == 0
    first = pd.read_parquet(tmp_path / "first" / "manifest.parquet").set_index(Col.PATH)
    page_file = tmp_path / "first" / "report" / "review.html"
    assert 'href="review.html"' in (tmp_path / "first" / "report" / "index.html").read_text()

    with chromium_page(downloads=True) as page:
        page.goto(page_file.as_uri())
        page.wait_for_function("document.documentElement.dataset.reviewReady === '1'")
        cards = card_states(page)
        waiting = sorted(first.index[first[Col.ACTION] == "review"])
        assert len(cards) == len(waiting) == 5 and progress(page).startswith("0 decided · 5 left")
        names = [name for name, _ in cards]
        assert names[2] == f"unlabeled: {HOSTILE}", names  # shown as text, not markup
        assert page.query_selector('img[src="x"]') is None
        paths = page.evaluate("JSON.parse(document.getElementById('review-data').textContent).paths")
        assert sorted(paths) == waiting and paths[2] == str(hostile)

        # By key from the first card: drop it, keep the next, skip one, drop the one after; then a click keeps the
        # hostile card. The last card stays undecided.
        for key in ("d", "k", "ArrowRight", "d"):
            page.keyboard.press(key)
        page.locator(".rcard").nth(2).locator("button.keep").click()
        expected = {paths[0]: "drop", paths[1]: "keep", paths[3]: "drop", paths[2]: "keep"}
        decided = [decision for _, decision in card_states(page)]
        assert decided == ["drop", "keep", "keep", "drop", ""]
        assert progress(page).startswith("4 decided · 1 left (2 keep, 2 drop)")

        # Enter opens the large view of the current card (the last, after the key that decided the fourth).
        page.keyboard.press("Enter")
        assert page.is_visible("#viewer") and page.locator("#viewer .pic").count() == 2
        page.keyboard.press("Escape")
        assert not page.is_visible("#viewer")

        page.reload()
        page.wait_for_function("document.documentElement.dataset.reviewReady === '1'")
        assert [decision for _, decision in card_states(page)] == decided, "a reload keeps every decision"
        assert progress(page).startswith("4 decided · 1 left") and "4 decisions restored" in page.inner_text("#note")

        with page.expect_download() as download:
            page.click("#download")
        assert download.value.suggested_filename == "overrides.csv"
        csv_file = tmp_path / "overrides.csv"
        download.value.save_as(csv_file)
        assert not page.problems, page.problems

    assert '"' + str(hostile).replace('"', '""') + '",keep' in csv_file.read_text()
    assert read_overrides(csv_file) == expected

    assert main([*common, "--out", str(tmp_path / "second"), "--set", f"decisions.overrides={csv_file}"]) == 0
    second = pd.read_parquet(tmp_path / "second" / "manifest.parquet").set_index(Col.PATH)
    for path, action in expected.items():
        assert second.loc[path, Col.ACTION] == action
        assert second.loc[path, Col.REASON] == f"reviewer: {action} (Curate: {first.loc[path, Col.REASON]})"
    others = first.index.difference(list(expected))
    pd.testing.assert_frame_equal(first.loc[others, [Col.ACTION, Col.REASON, Col.CURATED_SPLIT]],
                                  second.loc[others, [Col.ACTION, Col.REASON, Col.CURATED_SPLIT]])

    # The next report shows the reviewer's decisions as made, and its download carries them again.
    with chromium_page(downloads=True) as page:
        page.goto((tmp_path / "second" / "report" / "review.html").as_uri())
        page.wait_for_function("document.documentElement.dataset.reviewReady === '1'")
        assert progress(page).startswith("4 decided · 1 left")
        with page.expect_download() as download:
            page.click("#download")
        download.value.save_as(tmp_path / "again.csv")
        assert not page.problems, page.problems
    assert read_overrides(tmp_path / "again.csv") == expected

    # On request, a gallery's files join the page, after those waiting and before those decided.
    from flows.review import main as review

    assert review([str(tmp_path / "second"), "--gallery", "blurry"]) == 0
    html = (tmp_path / "second" / "report" / "review.html").read_text()
    paths = json.loads(re.search(r'id="review-data">(.*?)</script>', html, re.S).group(1))["paths"]
    blurry = second.iloc[[("blurry" in list(issues)) for issues in second[Col.ISSUES]]].sort_values(
        [Col.SHARPNESS, Col.PATH]).index.tolist()  # the gallery's order: blurriest first
    assert blurry and paths[0] in second.index[second[Col.ACTION] == "review"]
    assert paths[1:1 + len(blurry)] == blurry and set(paths[1 + len(blurry):]) == set(expected)
    assert review([str(tmp_path / "second"), "--gallery", "nope"]) == 2


@pytest.mark.slow
@needs_browser
def test_three_thousand_cards_render_and_a_hundred_keys_decide_a_hundred(tmp_path, texture):
    """3,000 cards, half of them in overlapping pairs with the shared region drawn: the time from navigation to an
    interactive page, measured in the browser, and 100 key presses deciding 100 cards."""
    n = 3000
    images = [texture(tmp_path / "img" / f"{i}.jpg", seed=i, size=64) for i in range(20)]
    records = []
    for i in range(n):
        path = tmp_path / "data" / "train" / f"c{i % 7}" / f"tile_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(images[i % len(images)], path)
        records.append({Col.PATH: str(path), Col.SPLIT: "train", Col.LABEL: f"c{i % 7}",
                        Col.DENSITY_RATIO: 0.5 + (i % 100) / 200})
    manifest, pairs = manifest_of(records, [(i, i + 1, OVERLAP) for i in range(0, n // 2, 2)])
    manifest[Col.ACTION] = "review"
    manifest[Col.REASON] = "review: outlier"
    manifest[Col.ISSUES] = [np.array(["outlier"], dtype=object)] * n
    clock = time.perf_counter()
    page_file, cards = write_review_page(tmp_path / "report", manifest, pairs, "bench")
    written = time.perf_counter() - clock
    assert cards == n

    with chromium_page() as page:
        page.goto(page_file.as_uri())
        page.wait_for_function("document.documentElement.dataset.reviewReady === '1'")
        figures = page.evaluate("""() => ({
            render_ms: Number(document.documentElement.dataset.renderMs),
            script_ms: Number(document.documentElement.dataset.initMs),
            first_paint_ms: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null,
            html_mb: performance.getEntriesByType('navigation')[0].decodedBodySize / 1e6})""")
        for _ in range(100):
            page.keyboard.press("k")
        assert progress(page).startswith(f"100 decided · {n - 100} left")
        assert page.evaluate("document.querySelector('.rcard.current').dataset.i") == "100"
        box = page.locator(".rcard.current").bounding_box()  # brought into view, below the sticky bar
        assert page.locator("#bar").bounding_box()["height"] <= box["y"] and box["y"] + box["height"] <= 1000
        # The cost of one key in the page itself, without the driver's round trip: 200 more decisions.
        figures["key_ms"] = page.evaluate("""() => {
            const start = performance.now();
            for (let i = 0; i < 200; i++) document.dispatchEvent(new KeyboardEvent('keydown', {key: 'd'}));
            return (performance.now() - start) / 200; }""")
        assert progress(page).startswith(f"300 decided · {n - 300} left")
        assert not page.problems, page.problems
    figures["write_s"] = written
    print(f"\nreview page, {n:,} cards: {json.dumps(figures)}")
    if os.environ.get("CURATE_REVIEW_BENCH"):
        Path(os.environ["CURATE_REVIEW_BENCH"]).write_text(json.dumps({"cards": n, **figures}, indent=2))
