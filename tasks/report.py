"""The visual report: a static, self-contained folder of HTML pages, inline SVG plots and Pillow thumbnails.

`write_report` turns the manifest, the related pairs (`pairs.parquet`), the summary, the pair similarities and the
band thresholds into `report/index.html` (summary tables, plots, then one gallery section per finding) plus extra
gallery pages and `thumbs/`. Pairs are shown side by side with the ground they share drawn on both thumbnails
(`tasks.report_pairs`). Nothing is loaded from the network, so the folder opens from disk and can be copied
anywhere.

The report must stay fast and small for a million images: every gallery is capped and paginated (`ReportLimits`),
and thumbnails are generated only for the files actually shown, up to a hard cap. Every file name and value that
reaches the page goes through `html.escape`, since file names are user data (`<script>` is a valid file name).
"""

import hashlib
import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.images import load_reduced
from tasks.report_pairs import Item, Row, keeper_regions, leak_items, moved_items, overlap_items, region_svg
from tasks.schema import Action, Band, Col, Issue, issue_flags

THUMBS_DIR = "thumbs"
THUMB_SIZE = 128
UNLABELED = "(unlabeled)"


@dataclass(frozen=True)
class ReportLimits:
    """Caps that bound the report's size and build time whatever the dataset's size."""

    page_size: int = 60  # cards per page
    max_pages: int = 10  # pages per gallery; the rest is counted, not shown (the manifest lists it)
    max_group_members: int = 8  # members shown per duplicate set or cluster
    max_thumbnails: int = 3000  # thumbnails generated for the whole report
    max_classes: int = 40  # classes in the per-class plot
    max_splits: int = 20  # splits in the issues-per-split plot


@dataclass(frozen=True)
class Gallery:
    """One gallery section: its id, heading, explanation, how its items are laid out, and the items."""

    key: str
    heading: str
    note: str
    layout: str  # "cards" (one card an item, side by side), "groups" (a box an item) or "pairs" (small boxes of two)
    unit: str  # what the heading counts
    items: list[Item]
    total: int  # items found, before the cap
    source: str = "the manifest"  # the output that lists every item, shown or not


@dataclass
class _Thumbnails:
    """Generates thumbnails into `folder` on first use, named by a hash of the path, up to `cap` in all: `size`
    pixels on the longest side, linked as `subdir`/name (the review page's larger previews are made the same way)."""

    folder: Path
    cap: int
    made: dict[str, str | None] = field(default_factory=dict)  # path -> file name, None when it failed
    size: int = THUMB_SIZE
    subdir: str = THUMBS_DIR

    def get(self, path: str) -> str | None:
        """The thumbnail's file name relative to the report folder, or None (unreadable file or cap reached)."""
        if path in self.made:
            return self.made[path]
        if len(self.made) >= self.cap:
            return None
        self.made[path] = self._make(path)
        return self.made[path]

    def prepare(self, paths: Iterable[str], workers: int) -> None:
        """Generate, on `workers` threads, the thumbnails that calls of `get` with `paths` in this order would make
        one by one (the same files, and the same cap); `get` then finds them made. Decoding, resizing and
        encoding release the GIL, so threads overlap them."""
        wanted: dict[str, None] = {}  # in order of first use
        for path in paths:
            if len(self.made) + len(wanted) >= self.cap:
                break
            if path not in self.made:
                wanted[path] = None
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            self.made.update(zip(wanted, pool.map(self._make, wanted)))

    def _make(self, path: str) -> str | None:
        # Named by a hash, never by the original name: names may hold characters unsafe in a URL or on disk.
        name = hashlib.sha256(path.encode("utf-8", "backslashreplace")).hexdigest()[:24] + ".jpg"
        image = load_reduced(path, "RGB", self.size * 2)
        if image is None:
            return None  # the file is missing, changed or vanished since ingest: the card says so
        image.thumbnail((self.size, self.size))
        image.save(self.folder / name, "JPEG", quality=80)
        return f"{self.subdir}/{name}"


def _e(value: Any) -> str:
    """HTML-escape any value for text or a quoted attribute; missing values show as an empty string."""
    if value is None or (not isinstance(value, (list, np.ndarray)) and pd.isna(value)):
        return ""
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 3) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"


# ---------------------------------------------------------------- galleries


def _rows(manifest: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    """manifest[mask], by position: a boolean filter would pass over every row of every column, taking the few
    selected rows does not."""
    return manifest.iloc[np.flatnonzero(mask.to_numpy(dtype=bool))]


def _single(manifest: pd.DataFrame, flagged: pd.Series, order: str, ascending: bool, limit: int
            ) -> tuple[list[Item], int]:
    """Rows where `flagged` (those with one issue), most severe first, capped at `limit`: one card each."""
    rows = _rows(manifest, flagged)
    rows = rows.sort_values(order, ascending=ascending, na_position="last", kind="stable")
    return [Item([row]) for row in rows.head(limit).to_dict("records")], len(rows)


def _groups(manifest: pd.DataFrame, column: str, mask: pd.Series, limit: int) -> tuple[list[Item], int]:
    """Groups of at least two rows by `column` among `mask`, largest first, capped at `limit` groups."""
    rows = _rows(manifest, mask & manifest[column].notna())
    sizes = rows[column].value_counts()
    sizes = sizes[sizes >= 2]
    # Largest groups first, then by id so the order does not depend on hashing.
    ordered = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:limit]
    rank = {group: i for i, (group, _) in enumerate(ordered)}
    # Within a group the kept file comes first: it is the one the reader compares the others against.
    first = {Action.KEEP.value: 0, Action.REVIEW.value: 1, Action.DROP.value: 2}
    members = rows[rows[column].isin(list(rank))].assign(
        _group=lambda frame: frame[column].map(rank), _action=lambda frame: frame[Col.ACTION].map(first)
    ).sort_values(["_group", "_action", Col.PATH], kind="stable")
    groups: list[list[Row]] = [[] for _ in ordered]
    for row in members.drop(columns=["_group", "_action"]).to_dict("records"):
        groups[rank[row[column]]].append(row)
    return [Item(rows, caption=f"{column} {rows[0][column]}: {len(rows):,} files") for rows in groups], len(sizes)


def build_galleries(manifest: pd.DataFrame, pairs: pd.DataFrame, limits: ReportLimits) -> list[Gallery]:
    """Every gallery section, in page order, from the manifest and the related pairs (`pairs.parquet`)."""
    limit = limits.page_size * limits.max_pages
    everything = pd.Series(True, index=manifest.index)
    flags = issue_flags(manifest[Col.ISSUES])
    duplicates, duplicate_sets = _groups(manifest, Col.DUP_GROUP, everything, limit)
    leaks, leaking, no_action = leak_items(manifest, pairs, limit)
    moved, moved_sets = moved_items(manifest, pairs, limit)
    return [
        Gallery("duplicates", "Duplicate sets", "Each set of copies of one picture (same bytes, or sharing at least "
                "decisions.duplicate_share of each image's ground), the kept file first. On each copy that "
                "pairs.parquet links to the kept file, the region it shares with that file is drawn, with the "
                "relation in words.",
                "groups", "sets", keeper_regions(duplicates, pairs), duplicate_sets),
        Gallery("overlaps", "Overlaps", "Pairs of images that share part of their ground, side by side, the shared "
                "region drawn on both. Both are kept unless a split leak or an issue drops one. Pairs across splits "
                "first, then by the larger of the two shares, largest first.",
                "pairs", "pairs", *overlap_items(manifest, pairs, limit), source="pairs.parquet"),
        Gallery("clusters", "Clusters",
                "Images linked by similarity at or above similarity.cluster_similarity (reported, not acted on).",
                "groups", "groups", *_groups(manifest, Col.CLUSTER, everything, limit)),
        Gallery("outliers", "Outliers", "Out of domain: most isolated first (lowest density ratio).", "cards", "files",
                *_single(manifest, flags[Issue.OUTLIER.value], Col.DENSITY_RATIO, True, limit)),
        Gallery("blurry", "Blurry", "Blurriest first (lowest sharpness).", "cards", "files",
                *_single(manifest, flags[Issue.BLURRY.value], Col.SHARPNESS, True, limit)),
        Gallery("bright", "Bright (washed out or over-exposed)", "Brightest first (highest brightness).", "cards",
                "files", *_single(manifest, flags[Issue.BRIGHT.value], Col.BRIGHTNESS, False, limit)),
        Gallery("dark", "Dark", "Darkest first (lowest brightness).", "cards", "files",
                *_single(manifest, flags[Issue.DARK.value], Col.BRIGHTNESS, True, limit)),
        Gallery("corrupt", "Corrupt files", "Files that could not be decoded, with the reason.", "cards", "files",
                *_single(manifest, flags[Issue.CORRUPT.value], Col.PATH, True, limit)),
        Gallery("split-leaks", "Split leaks", "Each training file that shares ground with a kept evaluation file "
                "(leaks_into), beside that file, grouped by evaluation file, with the shared region drawn on both and "
                "what was done to the training file. Pairs across splits that join no leaking file (two training "
                "splits, two evaluation splits, or an evaluation file dropped for another reason) needed no action: "
                f"{no_action:,}.", "pairs", "training files", leaks, leaking),
        Gallery("label-conflicts", "Label conflicts", "Duplicate sets whose members carry different labels.",
                "groups", "sets", *_groups(manifest, Col.DUP_GROUP, flags[Issue.LABEL_CONFLICT.value], limit)),
        Gallery("moved", "Moved between splits", "Each set of files that share ground and was written wholly to one "
                "split (decisions.split_leak: reassign) with a file moved there from another split; largest first.",
                "groups", "sets", moved, moved_sets),
    ]


def paginate(items: Sequence[Item], limits: ReportLimits) -> list[list[Item]]:
    """Split items into pages of at most `page_size` cards (a group counts its shown members), `max_pages` pages."""
    pages: list[list[Item]] = []
    current: list[Item] = []
    cards = 0
    for item in items:
        size = min(len(item.rows), limits.max_group_members)
        if current and cards + size > limits.page_size:
            pages.append(current)
            current, cards = [], 0
        current.append(item)
        cards += size
    if current:
        pages.append(current)
    return pages[: limits.max_pages]


def _card(row: Row, thumbs: _Thumbnails, region: np.ndarray | None = None, note: str = "") -> str:
    """One file: thumbnail (or the decoding error) with `region` drawn on it, name, split and label, action and its
    evidence, and `note` (the relation the region comes from)."""
    path = str(row[Col.PATH])
    name = path.rsplit("/", 1)[-1]
    if not row[Col.VALID]:
        picture = f'<div class="nothumb error">{_e(row[Col.ERROR])}</div>'
    elif thumb := thumbs.get(path):
        overlay = "" if region is None else region_svg(region, row[Col.WIDTH], row[Col.HEIGHT], THUMB_SIZE)
        picture = (f'<div class="thumb"><img src="{_e(thumb)}" alt="{_e(name)}" width="{THUMB_SIZE}" '
                   f'height="{THUMB_SIZE}">{overlay}</div>')
    else:
        picture = '<div class="nothumb">no thumbnail</div>'
    relation = f'<div class="relation">{_e(note)}</div>' if note else ""
    facts_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in card_facts(row) if _e(v))
    action = str(row[Col.ACTION])
    return (
        f'<figure class="card {_e(action)}" title="{_e(path)}">{picture}<figcaption>{relation}'
        f'<div class="name">{_e(name)}</div><span class="badge {_e(action)}">{_e(action)}</span> '
        f'<span class="reason">{_e(row[Col.REASON])}</span><dl>{facts_html}</dl>'
        f'<div class="issues">{_e(", ".join(list(row[Col.ISSUES])))}</div></figcaption></figure>'
    )


def card_facts(row: Row) -> list[tuple[str, Any]]:
    """A file's numbers and links, as a card lists them (name, value); empty values are for the caller to skip."""
    return [
        ("split", row[Col.SPLIT]),
        ("moved to", row[Col.CURATED_SPLIT] if row[Col.CURATED_SPLIT] != row[Col.SPLIT] else None),
        ("label", row[Col.LABEL] if pd.notna(row[Col.LABEL]) else UNLABELED),
        ("nn similarity", _number(row[Col.NN_SIMILARITY])), ("match score", _number(row[Col.MATCH_SCORE])),
        ("transform", row[Col.MATCH_TRANSFORM]), ("sharpness", _number(row[Col.SHARPNESS], 2)),
        ("fine detail", _number(row[Col.FINE_DETAIL], 2)), ("brightness", _number(row[Col.BRIGHTNESS], 1)),
        ("black level", _number(row[Col.BLACK_LEVEL], 1)),
        ("density ratio", _number(row[Col.DENSITY_RATIO])), ("duplicate of", row[Col.DUPLICATE_OF]),
        ("leaks into", row[Col.LEAKS_INTO]),
    ]


def _render_items(items: Iterable[Item], layout: str, limits: ReportLimits, thumbs: _Thumbnails) -> str:
    parts = []
    for item in items:
        cards = "".join(_card(row, thumbs, item.regions.get(i), item.notes.get(i, ""))
                        for i, row in enumerate(item.rows[: limits.max_group_members]))
        if layout == "cards":
            parts.append(cards)
            continue
        hidden = len(item.rows) - limits.max_group_members
        more = f'<p class="more">and {hidden:,} more in the manifest</p>' if hidden > 0 else ""
        parts.append(f'<div class="group {_e(layout)}"><h3>{_e(item.caption)}</h3><div class="cards">{cards}</div>'
                     f'{more}</div>')
    return "".join(parts) if layout == "groups" else f'<div class="{_e(layout)}">{"".join(parts)}</div>'


def _page_name(key: str, number: int) -> str:
    """Page 1 of each gallery lives in index.html; later pages are separate files."""
    return "index.html" if number == 1 else f"{key}-{number}.html"


def _pager(key: str, count: int, current: int) -> str:
    if count <= 1:
        return ""
    links = []
    for number in range(1, count + 1):
        target = _page_name(key, number) + (f"#{key}" if number == 1 else "")
        links.append(f"<strong>{number}</strong>" if number == current else f'<a href="{_e(target)}">{number}</a>')
    return f'<nav class="pager">pages: {" ".join(links)}</nav>'


def _gallery_html(gallery: Gallery, pages: list[list[Item]], number: int, limits: ReportLimits,
                  thumbs: _Thumbnails) -> str:
    """Page `number` (from 1) of a gallery section, with its pager and a note when the cap hid items."""
    shown = sum(len(page) for page in pages)
    capped = f" Showing the first {shown:,}; {gallery.source} lists them all." if gallery.total > shown else ""
    page = pages[number - 1] if pages else []
    body = _render_items(page, gallery.layout, limits, thumbs) if page else '<p class="empty">None found.</p>'
    pager = _pager(gallery.key, len(pages), number)
    count = f"{gallery.total:,} {gallery.unit}"
    return (f'<section id="{_e(gallery.key)}"><h2>{_e(gallery.heading)} <small>({_e(count)})</small></h2>'
            f'<p>{_e(gallery.note)}{_e(capped)}</p>{pager}{body}{pager}</section>')


# ---------------------------------------------------------------- plots (inline SVG, no plotting library)


def _svg(width: int, height: int, label: str, body: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{_e(label)}">{body}</svg>')


def similarity_histogram(similarities: np.ndarray, bands: dict[Band, float], bins: int = 50) -> str:
    """Histogram of pair similarities (log count axis: the high bands are rare) with each band threshold marked."""
    # The threshold labels get their own rows above the bars, which near the thresholds are often tall.
    width, left, bottom, top = 760, 50, 40, 14 * len(bands) + 10
    height = 240 + top
    values = np.asarray(similarities, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return '<p class="empty">No similarity pairs (similarity was skipped or found none).</p>'
    low = math.floor(min(float(values.min()), min(bands.values()) - 0.05) * 20) / 20
    high = max(1.0, float(values.max()))
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    peak = math.log10(counts.max() + 1)
    plot_w, plot_h = width - left - 30, height - bottom - top

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * plot_w

    parts = []
    for count, start, end in zip(counts, edges[:-1], edges[1:]):
        bar = math.log10(count + 1) / peak * plot_h
        parts.append(f'<rect x="{x(start):.1f}" y="{top + plot_h - bar:.1f}" '
                     f'width="{max(x(end) - x(start) - 1, 1):.1f}" height="{bar:.1f}" fill="#4a78b5"><title>'
                     f'{start:.3f}–{end:.3f}: {int(count):,} pairs</title></rect>')
    for i, (band, threshold) in enumerate(sorted(bands.items(), key=lambda item: item[1])):
        px = x(threshold)
        parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{12 + 14 * i}" y2="{top + plot_h}" stroke="#c0392b" '
                     f'stroke-dasharray="4 3"/><text x="{px - 3:.1f}" y="{12 + 14 * i}" text-anchor="end" '
                     f'font-size="11" fill="#c0392b">{_e(Band(band).value)} &gt; {threshold:g}</text>')
    for tick in np.linspace(low, high, 6):
        parts.append(f'<text x="{x(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">'
                     f'{tick:.2f}</text>')
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#333"/>'
                 f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" font-size="12">cosine similarity'
                 f' of {values.size:,} neighbour pairs (bar height: log count; max {int(counts.max()):,})</text>')
    return _svg(width, height, "histogram of pair similarities", "".join(parts))


def _bars(rows: list[tuple[str, list[int]]], series: list[tuple[str, str]], label: str) -> str:
    """Horizontal grouped bars: one row per name, one bar per series, value printed after each bar."""
    bar_h, gap, left, width = 12, 8, 170, 760
    row_h = bar_h * len(series) + gap
    height = 30 + row_h * len(rows)
    peak = max([max(values) for _, values in rows] + [1])
    parts = [f'<rect x="{left + 160 * i}" y="4" width="10" height="10" fill="{colour}"/><text x="{left + 14 + 160 * i}"'
             f' y="13" font-size="11">{_e(name)}</text>' for i, (name, colour) in enumerate(series)]
    for r, (name, values) in enumerate(rows):
        y0 = 26 + r * row_h
        parts.append(f'<text x="{left - 6}" y="{y0 + row_h / 2}" text-anchor="end" font-size="11">'
                     f'{_e(name if len(name) <= 26 else name[:25] + "…")}<title>{_e(name)}</title></text>')
        for s, (value, (_, colour)) in enumerate(zip(values, series)):
            length = value / peak * (width - left - 60)
            parts.append(f'<rect x="{left}" y="{y0 + s * bar_h}" width="{length:.1f}" height="{bar_h - 2}" '
                         f'fill="{colour}"/><text x="{left + length + 4:.1f}" y="{y0 + s * bar_h + 9}" '
                         f'font-size="10">{value:,}</text>')
    return _svg(width, height, label, "".join(parts))


def class_counts_plot(manifest: pd.DataFrame, limits: ReportLimits) -> str:
    """Files per class before curation and kept after, the largest classes first."""
    labels = manifest[Col.LABEL].astype("object").where(manifest[Col.LABEL].notna(), UNLABELED)
    before = labels.value_counts()
    after = labels[manifest[Col.ACTION] == Action.KEEP.value].value_counts()
    shown = before.head(limits.max_classes)
    rows = [(str(name), [int(count), int(after.get(name, 0))]) for name, count in shown.items()]
    more = (f'<p>and {len(before) - len(shown):,} smaller classes not drawn.</p>' if len(before) > len(shown) else "")
    return _bars(rows, [("before curation", "#9aa5b1"), ("kept", "#2e8b57")], "files per class") + more


def issues_per_split_plot(manifest: pd.DataFrame, limits: ReportLimits) -> str:
    """Images with each issue, per split: bars per split, one per issue found anywhere."""
    exploded = manifest[[Col.SPLIT, Col.ISSUES]].explode(Col.ISSUES).dropna()
    if exploded.empty:
        return '<p class="empty">No issues found.</p>'
    counts = exploded.value_counts([Col.ISSUES, Col.SPLIT]).to_dict()  # (issue, split) -> images
    splits = list(manifest[Col.SPLIT].value_counts().index[: limits.max_splits])
    palette = ["#4a78b5", "#e08e2b", "#2e8b57", "#c0392b", "#8e44ad", "#7f8c8d"]
    series = [(str(split), palette[i % len(palette)]) for i, split in enumerate(splits)]
    found = set(exploded[Col.ISSUES])
    rows = [(issue.value, [int(counts.get((issue.value, split), 0)) for split in splits])
            for issue in Issue if issue.value in found]
    return _bars(rows, series, "images with each issue per split")


# ---------------------------------------------------------------- pages

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;background:#fff}"
    "table{border-collapse:collapse;margin-bottom:1.2em}td,th{border:1px solid #ccc;padding:3px 9px;text-align:left}"
    "td.n{text-align:right}th{background:#f3f3f3}.fail td{background:#fde8e8}nav.toc a{margin-right:.8em}"
    ".row{display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-start}section{border-top:2px solid #ddd;"
    "margin-top:1.5em}h2 small{font-weight:normal;color:#666}"
    ".cards{display:flex;flex-wrap:wrap;gap:8px}.group{border:1px solid #ddd;border-radius:6px;padding:6px;"
    "margin:8px 0}.group h3{margin:0 0 6px;font-size:14px}"
    ".card{width:190px;margin:0;border:1px solid #ccc;border-radius:4px;padding:4px;font-size:11px;"
    "overflow-wrap:anywhere}.card.keep{border-color:#2e8b57}.card.drop{border-color:#c0392b;background:#fff6f5}"
    ".card.review{border-color:#e08e2b;background:#fffaf0}.card img{display:block;margin:auto;object-fit:contain}"
    ".nothumb{height:128px;display:flex;align-items:center;justify-content:center;background:#eee;color:#666;"
    "text-align:center}.nothumb.error{background:#fde8e8;color:#8b1a1a}.name{font-weight:600;margin-top:3px}"
    ".badge{display:inline-block;padding:0 5px;border-radius:3px;color:#fff;background:#2e8b57}"
    ".badge.drop{background:#c0392b}.badge.review{background:#e08e2b}dl{display:grid;grid-template-columns:auto 1fr;"
    "gap:0 6px;margin:3px 0}dt{color:#666}dd{margin:0}.issues{color:#8b1a1a}.pager{margin:6px 0}"
    # A pair's box holds its two cards side by side; pairs flow across the page.
    ".pairs{display:flex;flex-wrap:wrap;gap:0 12px}.group.pairs{box-sizing:border-box;width:424px}"
    ".group.pairs h3{font-weight:normal;overflow-wrap:anywhere}.relation{color:#5b2a86;margin-bottom:2px}"
    # The shared region is drawn over the thumbnail's 128 px box, in which the image is fitted and centred.
    ".thumb{position:relative;width:128px;height:128px;margin:auto}.thumb svg{position:absolute;left:0;top:0;"
    "pointer-events:none}.region polygon{fill:#ffd400;fill-opacity:.3;stroke:#ff1493;stroke-width:2;"
    "stroke-linejoin:round}"
)

# Records script errors, failed image loads and console errors into the page itself, so a headless browser's
# DOM dump shows whether the page rendered cleanly. Runs first, before anything that could fail.
ERROR_RECORDER = (
    "<script>(function(){var d=document.documentElement;d.dataset.errors='0';function note(m){"
    "d.dataset.errors=String(Number(d.dataset.errors)+1);d.dataset.lastError=String(m).slice(0,300);}"
    "window.addEventListener('error',function(e){note(e.message||('failed to load '+(e.target&&e.target.src)));},true);"
    "var ce=console.error;console.error=function(){note([].join.call(arguments,' '));ce.apply(console,arguments);};"
    "window.addEventListener('load',function(){var n=0;[].forEach.call(document.images,function(i){"
    "if(i.complete&&i.naturalWidth>0)n++;});d.dataset.imagesLoaded=String(n);d.dataset.ready='1';});})();</script>"
)


def _page(title: str, body: str, head: str = "") -> str:
    """A whole page: the error recorder first, the report's style, then `head` (more style) and `body`."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>{ERROR_RECORDER}'
            f'<style>{STYLE}</style>{head}</head><body>{body}</body></html>')


def _count_table(caption: str, rows: dict[str, dict[str, Any]], unit: str) -> str:
    body = "".join(
        f'<tr><td>{_e(name)}</td><td class="n">{value["count"]:,}</td><td class="n">{value["of"]:,}</td>'
        f'<td class="n">{value["share"]:.2%}</td></tr>' for name, value in rows.items()
    )
    return (f"<div><h3>{_e(caption)}</h3><table><thead><tr><th>{_e(unit)}</th><th>count</th><th>out of</th>"
            f"<th>share</th></tr></thead><tbody>{body}</tbody></table></div>")


def _counts(section: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The counts of a summary section, without its note."""
    return {name: value for name, value in section.items() if isinstance(value, dict)}


def _summary_html(summary: dict[str, Any]) -> str:
    """The summary section: headline, images by issue and action, pairs by similarity band and by relation, split
    leaks by action, and the quality gate. Every figure is read from the summary, so the two never disagree."""
    gate = summary["gate"]
    gate_rows = "".join(
        f"<tr class=\"{'pass' if item['success'] else 'fail'}\"><td>{_e(item['name'])}</td>"
        f"<td>{_e(item['description'])}</td><td>{'pass' if item['success'] else 'FAIL'}</td>"
        f"<td>{_e(json.dumps(item['observed'], default=str))}</td></tr>" for item in gate["expectations"]
    )
    verdict = "passed" if gate["success"] else "FAILED"
    return (
        f'<section id="summary"><h2>Summary</h2><p>{summary["files"]:,} files, {summary["readable"]:,} readable; '
        f'{summary["duplicate_sets"]:,} duplicate sets; quality gate <strong>{verdict}</strong>.</p>'
        + '<div class="row">' + _count_table("Images by issue", summary["issues"], "issue")
        + _count_table("Images by action", summary["actions"], "action")
        + _count_table("Distinct image pairs by similarity band", _counts(summary["pairs"]), "band")
        + _count_table("Distinct image pairs by relation", _counts(summary["relations"]), "relation")
        + _count_table("Split leaks by action", _counts(summary["split_leaks"]), "action")
        + _count_table("Files moved between splits", _counts(summary["moved"]), "move") + "</div>"
        + "".join(f"<p>{_e(heading)}: {_e(summary[key]['note'])}.</p>" for heading, key in (
            ("Pairs by similarity band", "pairs"), ("Pairs by relation", "relations"), ("Split leaks", "split_leaks"),
            ("Files moved", "moved")))
        + "<h3>Quality gate</h3><table><thead><tr><th>expectation</th>"
        f"<th>meaning</th><th>result</th><th>observed</th></tr></thead><tbody>{gate_rows}</tbody></table></section>"
    )


def write_report(
    folder: Path,
    manifest: pd.DataFrame,
    pairs: pd.DataFrame,
    summary: dict[str, Any],
    pair_similarities: np.ndarray,
    bands: dict[Band, float],
    title: str,
    limits: ReportLimits = ReportLimits(),
) -> Path:
    """Write the report into `folder` (created; must not hold an older report) and return its index.html. The
    review page (`tasks.review_page`, review.html) is written with it and linked at the top."""
    from tasks.review_page import PAGE, write_review_page  # it builds on this module's pieces: imported late

    (folder / THUMBS_DIR).mkdir(parents=True, exist_ok=True)
    thumbs = _Thumbnails(folder / THUMBS_DIR, limits.max_thumbnails)
    galleries = build_galleries(manifest, pairs, limits)
    plots = (
        '<section id="plots"><h2>Plots</h2><h3>Pair similarities and band thresholds</h3>'
        + similarity_histogram(pair_similarities, bands)
        + "<h3>Files per class, before and after curation</h3>" + class_counts_plot(manifest, limits)
        + "<h3>Issues per split</h3>" + issues_per_split_plot(manifest, limits) + "</section>"
    )
    toc = '<nav class="toc"><a href="#summary">summary</a><a href="#plots">plots</a>' + "".join(
        f'<a href="#{_e(g.key)}">{_e(g.heading.lower())} ({g.total:,})</a>' for g in galleries) + "</nav>"
    paginated = [(gallery, paginate(gallery.items, limits)) for gallery in galleries]
    # The thumbnails the pages below will show, in the order they show them: made in parallel beforehand.
    thumbs.prepare((str(row[Col.PATH]) for _, pages in paginated for page in pages for item in page
                    for row in item.rows[: limits.max_group_members] if row[Col.VALID]),
                   workers=min(8, os.cpu_count() or 1))
    sections = []
    for gallery, pages in paginated:
        sections.append(_gallery_html(gallery, pages, 1, limits, thumbs))
        for number in range(2, len(pages) + 1):
            body = ('<p><a href="index.html">← back to the report</a></p>'
                    + _gallery_html(gallery, pages, number, limits, thumbs))
            (folder / _page_name(gallery.key, number)).write_text(
                _page(f"{title}: {gallery.heading}, page {number}", body), encoding="utf-8")
    write_review_page(folder, manifest, pairs, title)
    waiting = int((manifest[Col.ACTION] == Action.REVIEW.value).sum())
    review = (f'<p class="review-link"><a href="{PAGE}"><strong>Review in the browser</strong></a>: {waiting:,} files '
              "wait for a reviewer. Keep or drop each, download overrides.csv, and pass it to the next run.</p>")
    index = folder / "index.html"
    index.write_text(
        _page(title, f"<h1>{_e(title)}</h1>{review}{toc}{_summary_html(summary)}{plots}{''.join(sections)}"),
        encoding="utf-8")
    return index
