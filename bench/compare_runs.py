"""Compare two Curate runs on the same files, output by output: whether a change of code changed any answer.

    .venv/bin/python -m bench.compare_runs BEFORE_OUT AFTER_OUT [--tolerance 1e-9]

BEFORE_OUT and AFTER_OUT are two `--out` folders (a benchmark's ``curate-out``). Every Parquet file of BEFORE_OUT
(``manifest.parquet``, ``pairs.parquet``, ``splits/*.parquet``) must be in AFTER_OUT with the same rows (sorted by
their paths) and columns, value for value: paths relative to each folder's parent (where the benchmarks put the
dataset), in path columns and in the reasons that quote them; floats within the tolerance, lists element by
element, missing as missing. The files' metadata (the configuration and timings of the run) is not compared.

A ``pairs.parquet`` written before the accepting check's ``score`` was split into ``inlier_ratio`` and
``correlation`` is compared through the new names: each pair's score must be the one its check measures (the
inlier ratio for keypoint evidence, the correlation for correlation evidence, neither for the same bytes) and
``tasks.relations.evidence_score`` of the new columns (for a composition, the weaker of both) must equal it.

Prints each file's verdict and the first differences; exits with status 1 if any output differs.
"""

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.relations import evidence_score
from tasks.schema import Check, PairCol

# The checks that measure each score; the others (same bytes, composition) are compared through evidence_score.
MEASURED_BY = {
    PairCol.INLIER_RATIO: {Check.KEYPOINTS.value, Check.FINE_KEYPOINTS.value},
    PairCol.CORRELATION: {Check.PHASE_CORRELATION.value, Check.SHIFT_SEARCH.value, Check.MEDIAN_CELL.value},
}
OLD_SCORE = "score"
SHOWN = 20  # differences listed per file


def same_value(before: object, after: object, tolerance: float) -> bool:
    """Whether two cells hold the same value: both missing, floats within `tolerance`, sequences element by
    element, anything else equal."""
    if isinstance(before, (list, tuple, np.ndarray)) or isinstance(after, (list, tuple, np.ndarray)):
        if not isinstance(before, (list, tuple, np.ndarray)) or not isinstance(after, (list, tuple, np.ndarray)):
            return False
        return len(before) == len(after) and all(same_value(b, a, tolerance) for b, a in zip(before, after))
    before_missing, after_missing = before is None or before is pd.NA, after is None or after is pd.NA
    if isinstance(before, float) and math.isnan(before):
        before_missing = True
    if isinstance(after, float) and math.isnan(after):
        after_missing = True
    if before_missing or after_missing:
        return before_missing and after_missing
    if isinstance(before, (float, np.floating)) or isinstance(after, (float, np.floating)):
        return abs(float(before) - float(after)) <= tolerance
    return bool(before == after)


def relative_paths(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """`frame` with every path below `root` in its strings written relative to it: path columns, and the paths
    that a manifest's reasons quote."""
    prefix = f"{root}/"
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].map(lambda value: isinstance(value, str)).any():
            frame[column] = frame[column].map(
                lambda value: value.replace(prefix, "") if isinstance(value, str) else value)
    return frame


def sorted_by_paths(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [column for column in ("path", PairCol.PATH_A, PairCol.PATH_B) if column in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True) if keys else frame


def score_differences(before: pd.DataFrame, after: pd.DataFrame, tolerance: float) -> list[str]:
    """The pairs whose old `score` is not what the new `inlier_ratio` and `correlation` say (rows aligned)."""
    problems = []
    expected = evidence_score(after[PairCol.EVIDENCE].to_numpy(), after[PairCol.INLIER_RATIO].to_numpy(float),
                              after[PairCol.CORRELATION].to_numpy(float))
    for row, (old, evidence) in enumerate(zip(before[OLD_SCORE].to_numpy(float), after[PairCol.EVIDENCE])):
        if not same_value(old, float(expected[row]), tolerance):
            problems.append(f"row {row} ({evidence}): score {old!r} before, evidence score {expected[row]!r} after")
        for column, checks in MEASURED_BY.items():
            measured = float(after[column].iloc[row])
            if evidence in checks and not same_value(old, measured, tolerance):
                problems.append(f"row {row} ({evidence}): score {old!r} before, {column} {measured!r} after")
            if evidence not in checks and evidence != Check.COMPOSITION.value and not math.isnan(measured):
                problems.append(f"row {row} ({evidence}): {column} {measured!r}, which its check does not measure")
    return problems


def differences(before: pd.DataFrame, after: pd.DataFrame, tolerance: float) -> list[str]:
    """Every difference between two frames of one output, rows aligned by their paths."""
    before, after = sorted_by_paths(before), sorted_by_paths(after)
    if len(before) != len(after):
        return [f"{len(before)} rows before, {len(after)} after"]
    problems = []
    if OLD_SCORE in before.columns and OLD_SCORE not in after.columns and set(MEASURED_BY) <= set(after.columns):
        problems += score_differences(before, after, tolerance)
        before, after = before.drop(columns=[OLD_SCORE]), after.drop(columns=list(MEASURED_BY))
    problems += [f"column {column} only before" for column in before.columns if column not in after.columns]
    problems += [f"column {column} only after" for column in after.columns if column not in before.columns]
    for column in (column for column in before.columns if column in after.columns):
        for row, (old, new) in enumerate(zip(before[column], after[column])):
            if not same_value(old, new, tolerance):
                problems.append(f"row {row} ({before.iloc[row, 0]}): {column} {old!r} before, {new!r} after")
    return problems


def compare_runs(before_out: Path, after_out: Path, tolerance: float) -> dict[str, tuple[int, list[str]]]:
    """Each Parquet output of `before_out` (by its path inside it): its rows, and its differences from
    `after_out`'s."""
    report = {}
    for before_file in sorted(before_out.rglob("*.parquet")):
        name = str(before_file.relative_to(before_out))
        before = relative_paths(pd.read_parquet(before_file), before_out.parent)
        after_file = after_out / name
        if not after_file.exists():
            report[name] = (len(before), ["missing after"])
            continue
        after = relative_paths(pd.read_parquet(after_file), after_out.parent)
        report[name] = (len(before), differences(before, after, tolerance))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="the first run's --out folder")
    parser.add_argument("after", type=Path, help="the second run's --out folder")
    parser.add_argument("--tolerance", type=float, default=1e-9, help="largest difference between equal floats")
    arguments = parser.parse_args(argv)
    report = compare_runs(arguments.before.resolve(), arguments.after.resolve(), arguments.tolerance)
    if not report:
        print(f"no Parquet outputs in {arguments.before}")
        return 1
    differing = 0
    for name, (rows, problems) in report.items():
        print(f"{name}: {rows} rows, " + (f"{len(problems)} differences" if problems else "identical"))
        for problem in problems[:SHOWN]:
            print(f"  {problem}")
        differing += bool(problems)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
