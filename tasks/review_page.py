"""The review page (report/review.html): decide the doubtful files in the browser, hand the decisions to the next run.

One card per file to decide: every file whose action is `review`, the files a reviewer already decided (their
reason begins `reviewer: `, so a decision can be seen and changed), and, on request, the files shown in some of the
report's galleries (`python -m flows.review`). Each card shows a scaled copy of the image (`previews/`, made here
and only for these cards), the evidence in words first (why Curate sent it, how far it lies from the dataset's
other files, the relation with its partner and the shared region drawn on both, or its nearest neighbour), the
numbers after, and its path relative to its split folder.

The page's script (`review_page.js`) keeps the reviewer's keep / drop decisions in the browser's local storage and
downloads them as overrides.csv: `path,action` rows with the manifest's paths, which `decisions.overrides` reads.
Cards are written here as escaped HTML, like the rest of the report; the paths the CSV needs travel as JSON in a
script element, so any file name, line breaks included, reaches the CSV exactly. Nothing is loaded from the
network: the page works from file://.
"""

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.overrides import REVIEWER
from tasks.report import Gallery, ReportLimits, _e, _number, _page, _Thumbnails, card_facts
from tasks.report_pairs import Link, Row, links_of, region_svg, rows_by_path
from tasks.schema import Action, Col, Issue, Relation

PAGE = "review.html"
PREVIEWS_DIR = "previews"
PREVIEW_SIZE = 1024  # longest side of the scaled copy shown on a card and, larger, on click
BOX = 200  # the square a card shows each picture in, in CSS pixels
BLOCK = 60  # cards a block
ASSETS = Path(__file__).parent  # review_page.js and review_page.css lie beside this module
STORAGE_PREFIX = "curate-review:"  # local storage key of a page's decisions, before its digest

# How far a file lies from the others, for the issues measured by one column: the column, whether low values are
# the abnormal side, and the words. The share counts the readable files on the normal side of this file.
DISTANCE = {
    Issue.OUTLIER: (Col.DENSITY_RATIO, True, "more isolated than", "density ratio"),
    Issue.BLURRY: (Col.SHARPNESS, True, "blurrier than", "sharpness"),
    Issue.DARK: (Col.BRIGHTNESS, True, "darker than", "brightness"),
    Issue.BRIGHT: (Col.BRIGHTNESS, False, "brighter than", "brightness"),
}


@dataclass(frozen=True)
class ReviewLimits:
    """Caps that bound the review page's size and build time."""

    max_cards: int = 3000  # the rest waits for the next run (a reviewer's decisions leave the queue)
    workers: int = min(8, os.cpu_count() or 1)  # threads that make the previews


@dataclass(frozen=True)
class Partner:
    """The file a card is compared with: its row, the pair that relates them (None for a nearest neighbour with no
    verified relation, or a leak through a dropped copy) and that relation in words."""

    row: Row
    link: Link | None
    words: str


def split_roots(manifest: pd.DataFrame) -> dict[str, str]:
    """Each split's folder, as ingest walked it, from the paths themselves: the manifest does not record it.

    A file directly in the folder has no label, so its folder is the split's. Otherwise each file lies in a
    subfolder named by its label: with two labels or more, the folder is where their paths part; with one, it is
    the folder above the last folder of that name. For display only: the CSV carries the manifest's paths."""
    roots = {}
    for split, group in manifest[[Col.SPLIT, Col.PATH, Col.LABEL]].groupby(Col.SPLIT, sort=False):
        unlabeled = np.flatnonzero(group[Col.LABEL].isna().to_numpy(dtype=bool))
        if len(unlabeled):
            roots[split] = str(group[Col.PATH].iloc[unlabeled[0]]).rsplit("/", 1)[0]
            continue
        # The common prefix of the first and last path in sort order is that of all of them.
        common = os.path.commonprefix([group[Col.PATH].min(), group[Col.PATH].max()]).rsplit("/", 1)[0]
        labels = group[Col.LABEL].unique()
        parts = common.split("/")
        if len(labels) == 1 and labels[0] in parts:
            common = "/".join(parts[: len(parts) - 1 - parts[::-1].index(labels[0])])
        roots[split] = common
    return roots


def shown_path(path: str, split: str, roots: dict[str, str]) -> str:
    """`path` relative to its split's folder, after the split's name: "train: cat/a.jpg"."""
    root = roots.get(split, "")
    return f"{split}: {path[len(root) + 1:] if root and path.startswith(root + '/') else path}"


def review_rows(manifest: pd.DataFrame, extra: Iterable[str] = ()) -> pd.DataFrame:
    """The files to show, in page order: those waiting for a reviewer first (grouped by reason, then by path), then
    `extra` paths (a gallery's files, in the gallery's order) not among them, then those a reviewer already decided
    (by reason, then path)."""
    place = {path: i for i, path in reversed(list(enumerate(extra)))}  # each path's first place
    waiting = (manifest[Col.ACTION] == Action.REVIEW.value).to_numpy(dtype=bool)
    decided = manifest[Col.REASON].str.startswith(REVIEWER).fillna(False).to_numpy(dtype=bool)
    requested = manifest[Col.PATH].isin(set(place)).to_numpy(dtype=bool) & ~waiting & ~decided
    shown = waiting | decided | requested
    chosen = manifest.iloc[np.flatnonzero(shown)]
    keys = chosen.assign(_group=np.where(waiting[shown], 0, np.where(requested[shown], 1, 2)),
                         _place=chosen[Col.PATH].map(place).where(requested[shown], 0).astype(float))
    ordered = keys.sort_values(["_group", "_place", Col.REASON, Col.PATH], kind="stable")
    return ordered.drop(columns=["_group", "_place"])


class _Distances:
    """Where a file's value lies among the readable files' values of each measured column (sorted once each)."""

    def __init__(self, manifest: pd.DataFrame) -> None:
        self.readable = manifest.iloc[np.flatnonzero(manifest[Col.VALID].to_numpy(dtype=bool))]
        self.sorted: dict[str, np.ndarray] = {}

    def words(self, row: Row, issue: Issue) -> str:
        """E.g. "outlier: more isolated than 99 % of the 120 readable files (density ratio 0.310, median 0.970)"."""
        column, low, compared, name = DISTANCE[issue]
        value = row[column]
        if value is None or pd.isna(value):
            return f"{issue.value}: no {name} measured"
        if column not in self.sorted:
            values = self.readable[column].to_numpy(dtype=float)
            self.sorted[column] = np.sort(values[np.isfinite(values)])
        values = self.sorted[column]
        if not len(values):
            return f"{issue.value}: {name} {_number(value)}"
        beyond = len(values) - np.searchsorted(values, value, "right") if low else np.searchsorted(values, value)
        return (f"{issue.value}: {compared} {beyond / len(values):.0%} of the {len(values):,} readable files "
                f"({name} {_number(value)}, median {_number(np.median(values))})").replace("%", " %")


def _label(row: Row) -> str | None:
    return str(row[Col.LABEL]) if pd.notna(row[Col.LABEL]) else None


def _group_id(value: Any) -> str:
    """A duplicate set's id as written in the manifest (a float once read back from Parquet with gaps)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _label_words(row: Row, labels: dict[Any, list[str]]) -> str:
    names = labels.get(row[Col.DUP_GROUP], [])
    label = row[Col.LABEL] if pd.notna(row[Col.LABEL]) else "(unlabeled)"
    return (f"label conflict: its duplicate set {_group_id(row[Col.DUP_GROUP])} holds the labels "
            f"{', '.join(names)}; this file is labelled {label}")


def _short_reason(row: Row, roots: dict[str, str]) -> str:
    """The reason, with the file it names (a leak's evaluation file, a copy's kept file) shown as on the cards."""
    reason = str(row[Col.REASON])
    for named in (row[Col.LEAKS_INTO], row[Col.DUPLICATE_OF]):
        if isinstance(named, str) and named:
            split = max((s for s, root in roots.items() if named.startswith(root + "/")),
                        key=lambda s: len(roots[s]), default=None)
            if split is not None:
                reason = reason.replace(named, shown_path(named, split, roots))
    return reason


def _evidence(row: Row, distances: _Distances, labels: dict[Any, list[str]], roots: dict[str, str]) -> list[str]:
    """The card's words, before any number: why Curate decided as it did, and how far the file lies from normal."""
    reason = _short_reason(row, roots)
    lines = [f"decided by a reviewer: {reason.removeprefix(REVIEWER)}" if reason.startswith(REVIEWER)
             else f"Curate: {reason}"]
    issues = {str(issue) for issue in row[Col.ISSUES]}
    if not row[Col.VALID]:
        lines.append(f"unreadable: {row[Col.ERROR]}")
    for issue in DISTANCE:
        if issue.value in issues:
            lines.append(distances.words(row, issue))
    if Issue.LABEL_CONFLICT.value in issues:
        lines.append(_label_words(row, labels))
    return lines


def choose_partners(manifest: pd.DataFrame, pairs: pd.DataFrame, rows: list[Row]) -> dict[str, Partner]:
    """For each row, the file to compare it with, by what most explains its decision: the evaluation file it leaks
    into; the kept file it is a copy of; a file of its duplicate set with another label; the file it shares the
    most ground with; else its nearest neighbour by similarity (no region then)."""
    links = links_of(pairs, {row[Col.PATH] for row in rows})
    named = {value for row in rows for value in (row[Col.LEAKS_INTO], row[Col.DUPLICATE_OF], row[Col.NN_PATH])
             if isinstance(value, str)}
    found = rows_by_path(manifest, named | {link.other for own in links.values() for link in own})
    partners = {}
    for row in rows:
        path, own = row[Col.PATH], links.get(row[Col.PATH], [])
        other_label = [link.other for link in own if link.relation != Relation.OVERLAP.value and link.other in found
                       and _label(found[link.other]) != _label(row)]
        strongest = max(own, key=lambda link: link.share_this, default=None)
        candidates = [row[Col.LEAKS_INTO], row[Col.DUPLICATE_OF], *other_label[:1],
                      strongest.other if strongest else None, row[Col.NN_PATH]]
        other = next((value for value in candidates if isinstance(value, str) and value != path and value in found),
                     None)
        if other is None:
            continue
        link = next((link for link in own if link.other == other), None)
        if link is not None:
            words = link.describe()
        elif other == row[Col.LEAKS_INTO]:
            words = "shares ground with it through a dropped copy of it: no pair of these two to draw"
        else:
            words = f"its nearest neighbour, similarity {_number(row[Col.NN_SIMILARITY])}: no shared ground found"
        partners[path] = Partner(found[other], link, words)
    return partners


def _picture(row: Row, previews: _Thumbnails, region: np.ndarray | None, role: str) -> str:
    """A picture button (opens the large view): the preview, fitted to the box, with `region` drawn on it."""
    path = str(row[Col.PATH])
    name = path.rsplit("/", 1)[-1]
    if not row[Col.VALID]:
        return f'<div class="pic nothumb error">{_e(row[Col.ERROR])}</div>'
    preview = previews.get(path)
    if preview is None:
        return '<div class="pic nothumb">no preview</div>'
    overlay = "" if region is None else region_svg(region, row[Col.WIDTH], row[Col.HEIGHT], BOX)
    return (f'<button type="button" class="pic {role}" title="{_e(path)}"><img src="{_e(preview)}" alt="{_e(name)}" '
            f'width="{BOX}" height="{BOX}" loading="lazy" decoding="async">{overlay}</button>')


def review_card(index: int, row: Row, partner: Partner | None, evidence: list[str], previews: _Thumbnails,
                roots: dict[str, str]) -> str:
    """One card: its picture and its partner's, the evidence in words, the numbers, and the keep / drop buttons."""
    pictures = _picture(row, previews, partner.link.region_this if partner and partner.link else None, "this")
    relation = ""
    if partner is not None:
        other = partner.row
        pictures += _picture(other, previews, partner.link.region_other if partner.link else None, "partner")
        relation = (f'<p class="relation">{_e(partner.words)} · <span class="other">'
                    f'{_e(shown_path(other[Col.PATH], other[Col.SPLIT], roots))}</span> '
                    f'<span class="badge {_e(other[Col.ACTION])}">{_e(other[Col.ACTION])}</span></p>')
    words = "".join(f"<li>{_e(line)}</li>" for line in evidence)
    facts = [("path", row[Col.PATH]), *card_facts(row), ("issues", ", ".join(str(i) for i in row[Col.ISSUES]))]
    numbers = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts if _e(v))
    return (
        f'<article class="rcard" data-i="{index}"><div class="pics">{pictures}</div>'
        f'<h3 class="name">{_e(shown_path(row[Col.PATH], row[Col.SPLIT], roots))}</h3>'
        f'<ul class="why">{words}</ul>{relation}'
        f'<details><summary>numbers</summary><dl>{numbers}</dl></details>'
        '<div class="decide"><button type="button" class="keep" data-decision="keep">keep <kbd>k</kbd></button>'
        '<button type="button" class="drop" data-decision="drop">drop <kbd>d</kbd></button>'
        '<span class="state"></span></div></article>'
    )


def _json_script(element_id: str, data: Any) -> str:
    """Data for the page's script, inert: `<`, `>` and `&` escaped, so no file name can close the element."""
    text = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _initial(row: Row) -> str | None:
    """A card's decision when the page opens: a reviewer's earlier one, or none."""
    return str(row[Col.ACTION]) if str(row[Col.REASON]).startswith(REVIEWER) else None


def gallery_paths(galleries: Sequence[Gallery], limits: ReportLimits) -> list[str]:
    """The files `galleries` show in the report (as many members of a group as the report shows), in order."""
    return [str(row[Col.PATH]) for gallery in galleries for item in gallery.items
            for row in item.rows[: limits.max_group_members]]


def write_review_page(folder: Path, manifest: pd.DataFrame, pairs: pd.DataFrame, title: str,
                      extra: Iterable[str] = (), limits: ReviewLimits = ReviewLimits()) -> tuple[Path, int]:
    """Write `folder`/review.html and the previews its cards show; return the page and its number of cards.

    `extra` paths (a gallery's files, `gallery_paths`) get cards too, after the files that wait for a reviewer."""
    chosen = review_rows(manifest, extra)
    total = len(chosen)
    rows = chosen.head(limits.max_cards).to_dict("records")
    partners = choose_partners(manifest, pairs, rows)
    roots = split_roots(manifest)
    distances = _Distances(manifest)
    groups = {row[Col.DUP_GROUP] for row in rows if Issue.LABEL_CONFLICT.value in set(map(str, row[Col.ISSUES]))}
    members = manifest.iloc[np.flatnonzero(manifest[Col.DUP_GROUP].isin(groups).to_numpy(dtype=bool))]
    labels = {group: sorted(set(frame[Col.LABEL].dropna().astype(str)))
              for group, frame in members.groupby(Col.DUP_GROUP)}

    (folder / PREVIEWS_DIR).mkdir(parents=True, exist_ok=True)
    previews = _Thumbnails(folder / PREVIEWS_DIR, cap=2 * limits.max_cards, size=PREVIEW_SIZE, subdir=PREVIEWS_DIR)
    readable = [row for row in rows if row[Col.VALID]]
    previews.prepare([str(p) for row in readable for p in (
        row[Col.PATH], *([partners[row[Col.PATH]].row[Col.PATH]] if row[Col.PATH] in partners else []))],
        workers=limits.workers)
    cards = [review_card(i, row, partners.get(row[Col.PATH]), _evidence(row, distances, labels, roots), previews,
                         roots)
             for i, row in enumerate(rows)]
    # Blocks of cards, each skipped by layout while off screen: moving through thousands of cards lays out a few
    # blocks, not every card.
    blocks = "".join(f'<div class="block">{"".join(cards[start:start + BLOCK])}</div>'
                     for start in range(0, len(cards), BLOCK))

    # Decisions made earlier by a reviewer for files beyond the cap still go into the download.
    carried = [[str(row[Col.PATH]), str(row[Col.ACTION])] for row in chosen.iloc[limits.max_cards:].to_dict("records")
               if _initial(row)]
    paths = [str(row[Col.PATH]) for row in rows]
    digest = hashlib.sha256("\n".join([title, *paths]).encode("utf-8", "backslashreplace")).hexdigest()[:16]
    data = {"key": STORAGE_PREFIX + digest, "paths": paths, "initial": [_initial(row) for row in rows],
            "carried": carried}
    hidden = (f" Showing the first {len(rows):,} of {total:,}: decide these and run again, the next report shows "
              "the rest." if total > len(rows) else "")
    waiting = int((manifest[Col.ACTION] == Action.REVIEW.value).sum())
    body = (
        f'<p><a href="index.html">← back to the report</a></p><h1>{_e(title)}: review</h1>'
        f'<p class="intro">Files waiting for a reviewer: {waiting:,}; cards below: {len(rows):,}.{_e(hidden)} '
        "Decide each with its buttons or the keys, then download overrides.csv and pass it to the next run: "
        "<code>--set decisions.overrides=overrides.csv</code>. Decisions stay in this browser until then. To "
        "decide the files of a gallery too: <code>python -m flows.review OUT --gallery blurry</code> (OUT: the "
        "folder holding this report).</p>"
        '<div id="bar"><span id="progress"><b id="decided">0</b> decided · <b id="left">0</b> left '
        '(<span id="kept">0</span> keep, <span id="dropped">0</span> drop)</span>'
        '<button type="button" id="download">download overrides.csv</button>'
        '<span class="keys"><kbd>k</kbd> keep · <kbd>d</kbd> drop · <kbd>u</kbd> undo · <kbd>←</kbd><kbd>→</kbd> '
        'move · <kbd>Enter</kbd> large view · <kbd>Esc</kbd> close</span><span id="note"></span></div>'
        + (f'<main id="cards">{blocks}</main>' if cards else '<p class="empty">Nothing to review.</p>')
        + '<div id="viewer" hidden><div class="stage"></div><p class="caption"></p>'
        '<button type="button" id="close">close <kbd>Esc</kbd></button></div>'
        + _json_script("review-data", data)
        + f'<script>{(ASSETS / "review_page.js").read_text(encoding="utf-8")}</script>'
    )
    style = f'<style>{(ASSETS / "review_page.css").read_text(encoding="utf-8")}</style>'
    page = folder / PAGE
    page.write_text(_page(f"{title}: review", body, head=style), encoding="utf-8")
    return page, len(rows)
