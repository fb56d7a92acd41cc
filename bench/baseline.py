"""Plain fastdup on the benchmark files, turned into a Curate-shaped manifest so the same scores apply.

Rules (the seed project's, i.e. what a user of fastdup alone would write):

- duplicate: an edge of ``fd.similarity()`` (default k=2, threshold 0.9) with similarity > 0.98; duplicate groups are
  the connected components of those edges;
- outlier: every file listed by ``fd.outliers()`` (its default bottom-5 % percentile of kNN edges);
- blurry / dark / bright: ``fd.img_stats()`` with ``blur`` < 50, ``mean`` < 13, ``mean`` > 220.5 (the seed's
  thresholds; fastdup 2.54's own ``summary()`` defaults are 150, 4 and 253, scored as a second variant);
- corrupt: ``fd.invalid_instances()``;
- split_leak / label_conflict: a duplicate group spanning two splits / two labels (fastdup knows neither, so this is
  the obvious post-processing);
- action: drop a corrupt file and every duplicate but the first path of its group, review any other issue, else keep.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.score import group_ids

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Thresholds:
    """The cut-offs that turn fastdup's raw outputs into issues."""

    duplicate: float = 0.98
    blur: float = 50.0
    dark: float = 13.0
    bright: float = 220.5


SEED_THRESHOLDS = Thresholds()
SUMMARY_DEFAULTS = Thresholds(blur=150.0, dark=4.0, bright=253.0)


@dataclass(frozen=True)
class FastdupOutputs:
    """The raw fastdup tables the baseline needs, with file names made absolute, and the run time."""

    files: list[str]
    similarity: pd.DataFrame  # a, b, similarity
    outliers: set[str]
    stats: pd.DataFrame  # path, blur, mean
    invalid: set[str]
    seconds: float


def list_dataset(root: Path) -> list[str]:
    """Return every file below the split folders (corrupt ones included), absolute and sorted."""
    return sorted(str(p.resolve()) for p in root.rglob("*") if p.is_file())


def _absolute(name: str) -> str:
    # fastdup returns names relative to the working directory when the images lie below it.
    return str(Path(name).resolve())


def run_fastdup(root: Path, work_dir: Path) -> FastdupOutputs:
    """Run fastdup with its defaults on every file below ``root`` and collect its tables."""
    os.environ.setdefault("SENTRY_OPT_OUT", "1")
    os.environ.setdefault("FASTDUP_PRODUCTION", "1")
    import fastdup  # noqa: PLC0415 - must follow the environment variables above

    files = list_dataset(root)
    start = time.perf_counter()
    fd = fastdup.create(work_dir=str(work_dir), input_dir=str(root))
    fd.run(overwrite=True, run_sentry=False, print_summary=False)
    seconds = time.perf_counter() - start
    sim = fd.similarity()
    outliers = fd.outliers()
    stats = fd.img_stats()
    invalid = fd.invalid_instances()
    return FastdupOutputs(
        files=files,
        similarity=pd.DataFrame({"a": sim["filename_from"].map(_absolute), "b": sim["filename_to"].map(_absolute),
                                 "similarity": sim["distance"]}),
        outliers=set() if outliers is None else set(outliers["filename_outlier"].map(_absolute)),
        stats=pd.DataFrame({"path": stats["filename"].map(_absolute), "blur": stats["blur"], "mean": stats["mean"]}),
        invalid=set(invalid["filename"].map(_absolute)),
        seconds=seconds,
    )


def _placement(path: str, root: Path) -> tuple[str, str | None]:
    parts = Path(path).relative_to(root.resolve()).parts
    return parts[0], parts[1] if len(parts) == 3 else None


def baseline_manifest(out: FastdupOutputs, root: Path, thresholds: Thresholds = SEED_THRESHOLDS) -> pd.DataFrame:
    """Turn fastdup's tables into a manifest with ``path, split, label, dup_group, issues, action``."""
    edges = out.similarity[out.similarity["similarity"] > thresholds.duplicate]
    group = group_ids(zip(edges["a"], edges["b"]))
    group_number = {root_path: k for k, root_path in enumerate(sorted(set(group.values())))}
    stats = out.stats.set_index("path")
    rows = []
    for path in out.files:
        split, label = _placement(path, root)
        issues = []
        if path in out.invalid:
            issues.append("corrupt")
        if path in stats.index:
            blur, mean = stats.at[path, "blur"], stats.at[path, "mean"]
            issues += [name for name, hit in (("blurry", blur < thresholds.blur), ("dark", mean < thresholds.dark),
                                              ("bright", mean > thresholds.bright)) if hit]
        if path in out.outliers:
            issues.append("outlier")
        rows.append({"path": path, "split": split, "label": label,
                     "dup_group": group_number[group[path]] if path in group else None, "issues": issues})
    manifest = pd.DataFrame(rows)
    manifest["dup_group"] = manifest["dup_group"].astype("Int64")
    _flag_spanning_groups(manifest)
    manifest["action"] = [_action(issues, path, dup, manifest) for path, issues, dup in
                          zip(manifest["path"], manifest["issues"], manifest["dup_group"])]
    return manifest


def _flag_spanning_groups(manifest: pd.DataFrame) -> None:
    """Add split_leak / label_conflict to members of duplicate groups spanning two splits / two labels."""
    for _, members in manifest.dropna(subset=["dup_group"]).groupby("dup_group"):
        for issue, column in (("split_leak", "split"), ("label_conflict", "label")):
            if members[column].dropna().nunique() > 1:
                for index in members.index:
                    manifest.at[index, "issues"].append(issue)


def _action(issues: list[str], path: str, dup_group: object, manifest: pd.DataFrame) -> str:
    if "corrupt" in issues:
        return "drop"
    if not pd.isna(dup_group) and path != manifest.loc[manifest["dup_group"] == dup_group, "path"].min():
        return "drop"
    return "review" if set(issues) - {"split_leak", "label_conflict"} else "keep"
