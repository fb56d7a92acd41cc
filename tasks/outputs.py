"""Outputs: the summary, the manifest and cleaned splits, the report, and their atomic publication.

Everything is first written into a staging folder inside the output folder, then moved into place with
`os.replace`, the manifest last, under a journal (see `publish`): a crash leaves the previous outputs or,
once the next run has started, the complete new ones; never a half-written file.
"""

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import OutputError
from tasks.expectations import GateResult
from tasks.report import write_report
from tasks.schema import Action, Band, Col, Issue, PairCol, Relation, pairs_to_table, to_table
from tasks.similarity import SIMILARITY, Similarity

MANIFEST_FILE = "manifest.parquet"
PAIRS_FILE = "pairs.parquet"
SUMMARY_FILE = "summary.json"
SPLITS_DIR = "splits"
QUALITY_DIR = "quality"
REPORT_DIR = "report"
STAGING_PREFIX = ".staging-"
JOURNAL_FILE = ".publishing"


@dataclass(frozen=True)
class OutputPaths:
    out: Path

    @property
    def manifest(self) -> Path:
        return self.out / MANIFEST_FILE

    @property
    def pairs(self) -> Path:
        return self.out / PAIRS_FILE

    @property
    def summary(self) -> Path:
        return self.out / SUMMARY_FILE

    @property
    def report(self) -> Path:
        return self.out / REPORT_DIR / "index.html"

    @property
    def quality(self) -> Path:
        return self.out / QUALITY_DIR

    def split(self, name: str) -> Path:
        return self.out / SPLITS_DIR / f"{name}.parquet"


def _count(n: int, total: int) -> dict[str, Any]:
    return {"count": n, "of": total, "share": round(n / total, 6) if total else 0.0}


def _exact_pairs(manifest: pd.DataFrame) -> tuple[int, int]:
    """Distinct pairs of readable files with the same bytes, and how many of them cross splits (the relations
    frame holds each set as a star, so these are counted from the hashes)."""
    readable = manifest.loc[manifest[Col.VALID], [Col.SHA256, Col.SPLIT]]
    per_hash = readable[Col.SHA256].value_counts()
    per_hash_and_split = readable.value_counts([Col.SHA256, Col.SPLIT])
    pairs = int((per_hash * (per_hash - 1) // 2).sum())
    return pairs, pairs - int((per_hash_and_split * (per_hash_and_split - 1) // 2).sum())


def summarize(
    manifest: pd.DataFrame,
    pairs: pd.DataFrame,
    similarity: Similarity,
    bands: dict[Band, float],
    ignored: list[str],
    gate: GateResult,
) -> dict[str, Any]:
    """Counts of images and of distinct pairs, each with its denominator. Never kNN edge counts. `pairs` is the
    relations frame (`tasks.relations`), with rows or paths."""
    total = len(manifest)
    readable = int(manifest[Col.VALID].sum())
    issue_counts = manifest[Col.ISSUES].explode().value_counts()
    action_counts = manifest[Col.ACTION].value_counts()
    possible_pairs = readable * (readable - 1) // 2
    similarities = similarity.pairs[SIMILARITY]
    thresholds = sorted(bands.items(), key=lambda item: item[1], reverse=True)
    pair_bands = {}
    upper = float("inf")
    for band, threshold in thresholds:
        in_band = int(((similarities > threshold) & (similarities <= upper)).sum())
        pair_bands[band.value] = {"above": threshold, **_count(in_band, possible_pairs)}
        upper = threshold
    exact_pairs, exact_cross_split = _exact_pairs(manifest)
    verified = pairs[pairs[PairCol.RELATION] != Relation.EXACT.value]
    relations = {
        Relation.EXACT.value: _count(exact_pairs, possible_pairs),
        **{relation.value: _count(int((verified[PairCol.RELATION] == relation.value).sum()), possible_pairs)
           for relation in (Relation.DUPLICATE, Relation.OVERLAP)},
        "cross_split": _count(exact_cross_split + int(verified[PairCol.CROSS_SPLIT].sum()), possible_pairs),
    }
    leaking = manifest[Col.LEAKS_INTO].notna()
    per_split = {
        split: {
            "files": int(len(rows)),
            **{action.value: int((rows[Col.ACTION] == action.value).sum()) for action in Action},
        }
        for split, rows in manifest[[Col.CURATED_SPLIT, Col.ACTION]].groupby(Col.CURATED_SPLIT, sort=False)
    }
    moved = manifest[manifest[Col.SPLIT] != manifest[Col.CURATED_SPLIT]]
    moves = {f"{given} -> {curated}": _count(int(count), total)
             for (given, curated), count in moved.value_counts([Col.SPLIT, Col.CURATED_SPLIT], sort=False).items()}
    return {
        "files": total,
        "readable": readable,
        "ignored_non_image_files": len(ignored),
        "issues": {issue.value: _count(int(issue_counts.get(issue.value, 0)), total) for issue in Issue},
        "actions": {action.value: _count(int(action_counts.get(action.value, 0)), total) for action in Action},
        "duplicate_sets": int(manifest[Col.DUP_GROUP].nunique()),
        "relations": {
            "note": "distinct unordered image pairs that share ground (pairs.parquet), by relation, and those "
            "whose files lie in different splits, out of all possible pairs of readable images",
            **relations,
        },
        "split_leaks": {
            "note": "files of a training split that share ground with a kept evaluation file, and what was done",
            **{action.value: _count(int((leaking & (manifest[Col.ACTION] == action.value)).sum()), total)
               for action in Action},
        },
        "pairs": {
            "note": "distinct unordered image pairs found among each readable image's nearest neighbours, "
            "out of all possible pairs of readable images",
            "exact_duplicate": _count(exact_pairs, possible_pairs),
            **pair_bands,
        },
        "splits": per_split,
        "moved": {"note": "files written to another split than the one they came from (decisions.split_leak: "
                  "reassign), in all and from which split to which", "all": _count(len(moved), total), **moves},
        "similarity": {"engine": similarity.engine, "skipped": similarity.skipped,
                       "not_analysed": len(similarity.unanalysed)},
        "gate": gate.to_json(),
    }


def summary_markdown(summary: dict[str, Any], title: str, out: Path) -> str:
    """The summary as Markdown, for the Prefect UI: headline figures, issue counts and the gate's verdict."""
    verdict = "passed" if summary["gate"]["success"] else "**FAILED**"
    lines = [
        f"# {title}",
        "",
        f"Outputs: `{out}`",
        "",
        f"{summary['files']:,} files, {summary['readable']:,} readable, {summary['duplicate_sets']:,} duplicate "
        f"sets; quality gate {verdict}.",
        "",
        "| issue | images | share of files |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {value['count']:,} | {value['share']:.2%} |" for name, value in summary["issues"].items()),
        "",
        "| action | images | share of files |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {value['count']:,} | {value['share']:.2%} |" for name, value in summary["actions"].items()),
    ]
    failed = [item["name"] for item in summary["gate"]["expectations"] if not item["success"]]
    if failed:
        lines += ["", "Failed expectations: " + ", ".join(failed)]
    return "\n".join(lines)


LOCK_FILE = ".curate.lock"


@contextlib.contextmanager
def exclusive_output(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder for a whole run: two runs on one folder never interleave.

    The second run fails at once with `OutputError` rather than waiting, so a scheduler sees the clash. The
    lock is an flock on a file inside the folder, released by the kernel if the process dies."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK_FILE, "a+")
    except OSError as error:
        raise OutputError(f"cannot write to output folder {out}: {error.strerror or error}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another curate run is writing to {out}; wait for it to finish") from None
        yield


def new_staging(out: Path) -> Path:
    """A fresh staging folder inside `out` (same file system, so the final moves are atomic renames).

    Call under `exclusive_output`. A publication that a killed run left half done is completed first (its
    staged outputs were complete before it began), then staging folders of killed runs are removed."""
    if (out / JOURNAL_FILE).exists():
        _complete_publication(out)
    for stale in out.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = out / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        staging.mkdir(parents=True)
    except OSError as error:
        raise OutputError(f"cannot write to output folder {out}: {error.strerror or error}") from None
    return staging


def write_staged(
    staging: Path,
    manifest: pd.DataFrame,
    pairs: pd.DataFrame,
    summary: dict[str, Any],
    gate: GateResult,
    metadata: dict[str, Any],
    title: str,
    pair_similarities: np.ndarray,
    bands: dict[Band, float],
) -> None:
    """Write every output file into the staging folder (the Data Docs are already in `staging/quality`).

    `pairs` holds the related pairs with paths (`tasks.relations.pairs_with_paths`). `pair_similarities` (each neighbour pair's similarity) and `bands` (the configured thresholds) feed the
    report's histogram."""
    staged = OutputPaths(staging)
    table = to_table(manifest, metadata)
    pq.write_table(table, staged.manifest)
    pq.write_table(pairs_to_table(pairs), staged.pairs)
    (staging / SPLITS_DIR).mkdir()
    # Each cleaned split: the kept rows of the manifest's table, filtered in Arrow rather than converted again.
    kept = manifest[Col.ACTION] == Action.KEEP.value
    for split in manifest[Col.CURATED_SPLIT].unique():
        rows = (kept & (manifest[Col.CURATED_SPLIT] == split)).to_numpy(dtype=bool)
        pq.write_table(table.filter(pa.array(rows)), staged.split(split))
    staged.quality.mkdir(exist_ok=True)
    (staged.quality / "expectations.json").write_text(json.dumps(gate.to_json(), indent=2, default=str))
    (staged.quality / "validation_result.json").write_text(json.dumps(gate.raw, indent=2, default=str))
    staged.summary.write_text(json.dumps(summary, indent=2, default=str))
    write_report(staged.report.parent, manifest, pairs, summary, pair_similarities, bands, title)


def publish(staging: Path, out: Path) -> OutputPaths:
    """Move complete staged outputs into `out`, the manifest last.

    A journal naming the staging folder is written first, atomically, and removed last: a run killed in
    between leaves the journal, and the next run on `out` completes the publication before anything else, so
    the outputs end up all old (killed before the journal) or all new, never a mix."""
    journal = out / JOURNAL_FILE
    pending = out / f"{JOURNAL_FILE}.tmp"
    pending.write_text(staging.name)
    os.replace(pending, journal)
    _complete_publication(out)
    return OutputPaths(out)


def interrupted_publication(out: Path) -> bool:
    """Whether a run was killed while publishing into `out` (the next run completes it)."""
    return (out / JOURNAL_FILE).exists()


def _complete_publication(out: Path) -> None:
    """Move every entry still in the journal's staging folder into place (idempotent), then drop the journal."""
    journal = out / JOURNAL_FILE
    staging = out / journal.read_text().strip()
    retired = out / f"{STAGING_PREFIX}retired"
    retired.mkdir(exist_ok=True)
    remaining = list(staging.iterdir()) if staging.is_dir() else []
    for entry in sorted(remaining, key=lambda path: (path.is_file(), path.name == MANIFEST_FILE, path.name)):
        target = out / entry.name
        if target.exists():
            old = retired / entry.name
            if old.is_dir():  # left by an earlier attempt at this same publication
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(entry, target)
    journal.unlink()
    shutil.rmtree(retired, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
