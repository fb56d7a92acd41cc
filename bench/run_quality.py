"""The quality benchmark, in one command: build the dataset, run plain fastdup and Curate, score both.

    .venv/bin/python -m bench.run_quality [--rsscn7 DIR] [--work DIR] [--results DIR] [--false-match-pairs N]

Writes ``bench/results/quality.md`` (tables) and ``bench/results/quality.json`` (everything, with the command,
date, machine and timings). It also runs Curate's verifier on random pairs of distinct RSSCN7 tiles of one class
(outside the listed overlaps) and reports every pair it accepts: false matches, or overlaps the list misses.
Curate runs as a subprocess (``python -m flows.curate``) and is scored from its ``manifest.parquet`` and
``pairs.parquet``; while that module does not exist, or writes no ``pairs.parquet``, the Curate column is skipped
with a message. Not part of the unit tests: it takes a few minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import itertools
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bench.baseline import SEED_THRESHOLDS, SUMMARY_DEFAULTS, baseline_manifest, run_fastdup
from bench.dataset import (
    DEFAULT_RSSCN7,
    list_tiles,
    load_overlaps,
    DEFAULT_WORK,
    SPLITS,
    TRANSFORMS,
    BenchConfig,
    build_dataset,
    composition,
    load_truth,
)
from bench.score import (
    DUPLICATE_SHARE,
    ISSUE_TRUTH,
    RELATIONS,
    group_ids,
    pairs_from_groups,
    score_manifest,
    truth_relations,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "bench" / "results"


def machine() -> dict:
    """Describe the machine, since every timing depends on it."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def run_curate(dataset: Path, out: Path, splits: Sequence[str] = SPLITS, settings: Sequence[str] = ()
               ) -> tuple[pd.DataFrame | None, pd.DataFrame | None, dict]:
    """Run ``python -m flows.curate`` on the split folders ``splits`` of ``dataset``, into an emptied ``out``, with
    ``settings`` (``KEY=VALUE``) as ``--set`` overrides;
    return its manifest and its related pairs (both None if skipped, or if either file is missing) and run facts.
    Paths (and the manifest's ``leaks_into`` and ``duplicate_of``) are made real, as in the truth."""
    if importlib.util.find_spec("flows.curate") is None:
        return None, None, {"skipped": "flows.curate does not exist yet: Curate was not run"}
    shutil.rmtree(out, ignore_errors=True)  # never score an earlier run's outputs
    # The content cache is off: a benchmark times a first run, not a re-run served from an earlier one.
    command = [sys.executable, "-m", "flows.curate",
               *(arg for split in splits for arg in ("--split", f"{split}={dataset / split}")), "--out", str(out),
               "--set", "cache_dir=null", *(arg for setting in settings for arg in ("--set", setting))]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    facts: dict = {"command": shlex.join(command), "seconds": round(time.perf_counter() - start, 1),
                   "exit_status": proc.returncode}
    manifest_path, pairs_path = out / "manifest.parquet", out / "pairs.parquet"
    if not manifest_path.exists():
        facts["skipped"] = f"no manifest written (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        return None, None, facts
    facts["manifest_metadata"] = parquet_metadata(manifest_path)
    facts["timings"] = find_timings(facts["manifest_metadata"])
    if not pairs_path.exists():
        facts["skipped"] = f"no pairs.parquet beside the manifest (exit {proc.returncode}): the run cannot be scored"
        return None, None, facts
    manifest = pd.read_parquet(manifest_path)
    for column in ("path", "leaks_into", "duplicate_of"):
        manifest[column] = manifest[column].map(lambda path: path if pd.isna(path) else os.path.realpath(path))
    pairs = pd.read_parquet(pairs_path)
    for column in ("path_a", "path_b"):
        pairs[column] = pairs[column].map(os.path.realpath)
    return manifest, pairs, facts


def recorded_duplicate_share(metadata: dict) -> float:
    """Return ``decisions.duplicate_share`` from a manifest's decoded Parquet metadata (key ``curate`` -> ``config``
    -> ``decisions``), or the default when the run records none."""
    try:
        return float(metadata["curate"]["config"]["decisions"]["duplicate_share"])
    except (KeyError, TypeError, ValueError):
        return DUPLICATE_SHARE


def same_class_pairs(tiles: list[str], overlaps: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """``count`` random unordered pairs (a, b) of distinct tiles of one class (the folder in a tile's name), never
    two tiles of one listed overlap group (closure of the list's a~b pairs); all of them if there are fewer."""
    group = group_ids(zip(overlaps["a"], overlaps["b"]))
    by_class: dict[str, list[str]] = {}
    for tile in sorted(tiles):
        by_class.setdefault(tile.split("/")[0], []).append(tile)
    eligible = [(a, b) for members in by_class.values() for a, b in itertools.combinations(members, 2)
                if group.get(a, a) != group.get(b, b)]
    picked = np.random.default_rng(seed).choice(len(eligible), min(count, len(eligible)), replace=False)
    return pd.DataFrame([eligible[index] for index in sorted(picked)], columns=["a", "b"])


def check_false_matches(rsscn7: Path, count: int, seed: int = 0) -> dict:
    """Run Curate's verifier (default configuration) on random distinct same-class tile pairs; return the count
    and the pairs it accepted, each of which is a false match or an overlap the list misses (look at them)."""
    from tasks.config import load_config
    from tasks.verify import verify_pairs

    tiles = [str(path.relative_to(rsscn7)) for path in list_tiles(rsscn7)]
    pairs = same_class_pairs(tiles, load_overlaps(), count, seed)
    pairs = pairs.assign(path_a=[str(rsscn7 / a) for a in pairs["a"]], path_b=[str(rsscn7 / b) for b in pairs["b"]])
    start = time.perf_counter()
    verified = verify_pairs(pairs, load_config().expert.verification)
    accepted = verified[verified["evidence"] != ""]
    return {"pairs": len(pairs), "seed": seed, "seconds": round(time.perf_counter() - start, 1),
            "accepted": accepted[["a", "b", "evidence", "transform", "inlier_ratio", "correlation", "share_a",
                                  "share_b"]].to_dict("records")}


def false_match_summary(check: dict) -> str:
    lines = [f"{check['pairs']} random pairs of distinct tiles of one class (seed {check['seed']}, listed overlaps "
             f"excluded), verified in {check['seconds']:.1f} s: {len(check['accepted'])} accepted. Each accepted "
             "pair is a false match or an overlap the list misses: look at it."]
    lines += [f"- `{row['a']}` ~ `{row['b']}`: {row['evidence']}, {row['transform']}, inlier ratio "
              f"{row['inlier_ratio']:.2f}, correlation {row['correlation']:.2f}, "
              f"shares {row['share_a']:.2f} and {row['share_b']:.2f}" for row in check["accepted"]]
    return "\n".join(lines)


def parquet_metadata(path: Path) -> dict:
    """Return the Parquet file's key-value metadata (JSON values decoded), minus pandas' and Arrow's own keys."""
    raw = pq.read_schema(path).metadata or {}
    out = {}
    for key, value in raw.items():
        name = key.decode()
        if name in ("pandas", "ARROW:schema"):
            continue
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value.decode(errors="replace")
    return out


def find_timings(meta: object, prefix: str = "", timed: bool = False) -> dict[str, float]:
    """Collect numbers under a key that mentions time, seconds or duration (or below such a key), at any depth."""
    found: dict[str, float] = {}
    if isinstance(meta, dict):
        for key, value in meta.items():
            name = f"{prefix}{key}"
            is_timed = timed or any(w in str(key).lower() for w in ("time", "second", "duration"))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if is_timed:
                    found[name] = float(value)
            else:
                found.update(find_timings(value, f"{name}.", is_timed))
    return found


def ratio_text(ratio: float | None, num: int | None = None, den: int | None = None) -> str:
    """Format a ratio with three decimals, and its (numerator/denominator) when given."""
    if ratio is None:
        return "n/a" if den is None else f"n/a ({num}/{den})"
    return f"{ratio:.3f}" if den is None else f"{ratio:.3f} ({num}/{den})"


def frame_to_markdown(frame: pd.DataFrame) -> str:
    """Render a small DataFrame as a markdown table (pandas' own needs the optional tabulate package)."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(map(str, [index, *row])) + " |" for index, row in zip(frame.index, frame.values)]
    return "\n".join(lines)


def markdown_table(scores: dict[str, dict]) -> str:
    """Render one column per system, one row per metric: detection of related pairs (facts), the recorded
    relations, the decisions (duplicate sets, overlaps of one split, leaks into val), issues and flags."""
    names = list(scores)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, cell) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(scores[n]) for n in names) + " |")

    row("related pairs: precision", lambda s: ratio_text(s["detection"]["precision"], s["detection"]["correct_pairs"],
                                                   s["detection"]["predicted_pairs"]))
    row("related pairs: recall", lambda s: ratio_text(s["detection"]["recall"], s["detection"]["found_pairs"],
                                                s["detection"]["true_pairs"]))
    row("related pairs: F1", lambda s: ratio_text(s["detection"]["f1"]))
    found_transforms = {t for s in scores.values() for t in s["detection"]["recall_by_transform"]}
    for transform in ["injected", *TRANSFORMS, *sorted(found_transforms - set(TRANSFORMS) - {"injected"})]:
        def recall_of(s: dict, t: str = transform) -> str:
            r = s["detection"]["recall_by_transform"].get(t)
            return "n/a" if r is None else ratio_text(r["recall"], r["found"], r["total"])
        row(f"recall: {transform}", recall_of)
    for true in RELATIONS:
        row(f"true {true} recorded as {' / '.join(RELATIONS)} / missed",
            lambda s, t=true: " / ".join(str(n) for n in s["relations"]["confusion"][t].values()))
    row("relation right (found pairs)", lambda s: ratio_text(s["relations"]["accuracy"], s["relations"]["correct"],
                                                       s["relations"]["found"]))
    row("relation wrong: borderline / clear", lambda s: f"{s['relations']['borderline']} / "
        f"{s['relations']['clear_mistakes']} (min share within {s['relations']['margin']} of "
        f"{s['relations']['duplicate_share']})")
    row("duplicate sets: exactly one kept (of which in review)",
        lambda s: ratio_text(s["duplicate_sets"]["share_one_kept"], s["duplicate_sets"]["one_kept"],
                       s["duplicate_sets"]["sets"]) + f" ({s['duplicate_sets']['one_in_review']})")
    row("duplicate sets: none kept (explained by issue or leak)",
        lambda s: f"{s['duplicate_sets']['none_kept']} ({s['duplicate_sets']['none_kept_explained']})")
    row("duplicate sets: several kept", lambda s: str(s["duplicate_sets"]["several_kept"]))
    row("overlaps of one split: both kept", lambda s: ratio_text(s["overlaps"]["share_both_kept"],
                                                           s["overlaps"]["both_kept"], s["overlaps"]["pairs"]))
    row("overlaps of one split: not both kept, explained", lambda s: f"{s['overlaps']['not_both_kept_explained']} "
        f"of {s['overlaps']['pairs'] - s['overlaps']['both_kept']}")
    row("leaks into val: pairs both kept (target 0)", lambda s: f"{s['leaks']['both_kept']} of {s['leaks']['pairs']}")
    row("leaks into val: training file set aside names a val file",
        lambda s: ratio_text(s["leaks"]["share_named"], s["leaks"]["names_evaluation_file"],
                       s["leaks"]["training_not_kept"]))
    for issue in ISSUE_TRUTH:
        row(f"{issue}: precision", lambda s, i=issue: ratio_text(s["issues"][i]["precision"], s["issues"][i]["found"],
                                                           s["issues"][i]["flagged"]))
        row(f"{issue}: recall", lambda s, i=issue: ratio_text(s["issues"][i]["recall"], s["issues"][i]["found"],
                                                        s["issues"][i]["true"]))
    for issue in ("split_leak", "label_conflict"):
        row(f"{issue}: recall", lambda s, i=issue: ratio_text(s["flags"][i]["recall"], s["flags"][i]["found"],
                                                        s["flags"][i]["true"]))
        row(f"{issue}: precision", lambda s, i=issue: ratio_text(s["flags"][i]["precision"]))
    row("clean unique images kept", lambda s: ratio_text(s["clean_keep"]["share"], s["clean_keep"]["kept"],
                                                   s["clean_keep"]["clean"]))
    row("seconds (whole run)", lambda s: f"{s['seconds']:.1f}" if s.get("seconds") is not None else "n/a")
    return "\n".join(lines)


def pair_list(pairs: list[list[str]], root: Path, limit: int = 40) -> str:
    """List predicted pairs that are not truly related, relative to the dataset root, for a person to look at."""
    lines = [f"- `{Path(a).relative_to(root)}` ~ `{Path(b).relative_to(root)}`" for a, b in pairs[:limit]]
    if len(pairs) > limit:
        lines.append(f"- ... and {len(pairs) - limit} more (see quality.json)")
    return "\n".join(lines)


def truth_summary(truth_rel: pd.DataFrame, duplicate_share: float) -> str:
    """Count the true pairs: natural ones, by true relation under ``duplicate_share``, across splits and labels."""
    by_relation = truth_rel["relation"].value_counts()
    return (f"True related pairs: {len(truth_rel)} ({truth_rel['transform'].str.startswith('natural:').sum()} "
            f"natural overlaps); at duplicate_share {duplicate_share}: "
            + ", ".join(f"{int(by_relation.get(r, 0))} {r}" for r in RELATIONS)
            + f"; {int(truth_rel['cross_split'].sum())} across splits, {int(truth_rel['label_conflict'].sum())} "
            "with different labels.")


def _relative(path: object, root: Path) -> str:
    """A path relative to the dataset root when below it, for reading."""
    try:
        return str(Path(str(path)).relative_to(root))
    except ValueError:
        return str(path)


def decision_list(score: dict, root: Path, limit: int = 20) -> str:
    """List, for a person to look at, the relation mistakes (borderline ones marked), the duplicate sets keeping
    several files or none, the overlaps of one split not both kept and the leaks kept or set aside unnamed; empty
    when there are none. At most ``limit`` of each."""
    def rel(path: object) -> str:
        return f"`{_relative(path, root)}`"

    sections = {
        "Relation recorded wrong (true -> recorded, true min share)": [
            f"{rel(a)} ~ {rel(b)}: {t}, {true} -> {got}, {share:.2f}{' (borderline)' if near else ''}"
            for a, b, t, true, got, share, near in score["relations"]["mistaken_pairs"]],
        "Duplicate sets keeping several files": [
            ", ".join(map(rel, kept)) for kept in score["duplicate_sets"]["several_kept_sets"]],
        "Duplicate sets keeping none": [
            ("explained: " if s["explained"] else "")
            + "; ".join(f"{rel(p)} {why.replace(f'{root}/', '')}" for p, why in s["members"].items())
            for s in score["duplicate_sets"]["none_kept_sets"]],
        "Overlaps of one split not both kept (actions)": [
            f"{rel(a)} ({act_a}) ~ {rel(b)} ({act_b}): {t}" for a, b, t, act_a, act_b in
            score["overlaps"]["not_both_kept"]],
        "Leaks into val with both files kept": [
            f"{rel(train)} ~ {rel(evaluation)}: {t}" for train, evaluation, t in score["leaks"]["both_kept_pairs"]],
        "Training files set aside without naming a val file": [
            f"{rel(train)} ~ {rel(evaluation)}: {t}, names {rel(target) if target else 'nothing'}"
            for train, evaluation, t, target in score["leaks"]["unnamed"]],
    }
    parts = []
    for title, items in sections.items():
        if items:
            more = [f"- ... and {len(items) - limit} more (see quality.json)"] if len(items) > limit else []
            parts.append(f"{title}: {len(items)}\n\n" + "\n".join([f"- {item}" for item in items[:limit]] + more))
    return "\n\n".join(parts)


def curate_summary(curate: dict) -> str:
    """Describe the Curate run: skipped, or its wall time and the stage timings its manifest metadata records."""
    if "skipped" in curate:
        return f"Skipped: {curate['skipped']}"
    lines = [f"`{curate['command']}`", "", f"Exit status {curate['exit_status']}, wall time {curate['seconds']:.1f} s."]
    if curate["timings"]:
        lines += ["", "| timing from the manifest metadata | seconds | share of wall time |", "|---|---|---|"]
        lines += [f"| {name} | {value:.1f} | {value / curate['seconds']:.0%} |"
                  for name, value in curate["timings"].items()]
    else:
        lines += ["", "The manifest's Parquet metadata records no timings."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the reports; return the exit status."""
    parser = argparse.ArgumentParser(description="Curate quality benchmark")
    parser.add_argument("--rsscn7", type=Path, default=DEFAULT_RSSCN7, help="RSSCN7 root (<class>/*.jpg)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="work folder, outside the repository")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where quality.md/.json go")
    parser.add_argument("--false-match-pairs", type=int, default=3000,
                        help="random same-class tile pairs run through the verifier (0: skip)")
    parser.add_argument("--seed", type=int, default=BenchConfig.seed,
                        help="seed of the dataset: which tiles are copied, degraded or corrupted, and how")
    args = parser.parse_args(argv)
    work = args.work.resolve()

    start = time.perf_counter()
    truth = load_truth(build_dataset(args.rsscn7.resolve(), work, BenchConfig(seed=args.seed)))
    build_seconds = time.perf_counter() - start
    dataset = truth.dataset
    print(f"dataset: {len(truth.files)} files in {dataset} ({build_seconds:.1f} s)", flush=True)

    outputs = run_fastdup(dataset, work / "fastdup-baseline")
    print(f"fastdup baseline: {outputs.seconds:.1f} s", flush=True)
    manifest, pairs, curate = run_curate(dataset, work / "curate-out")
    # Every system is scored against the truth's relations under the duplicate_share the Curate run used.
    duplicate_share = recorded_duplicate_share(curate.get("manifest_metadata", {}))
    truth_rel = truth_relations(truth.files, truth.pairs, load_overlaps(), duplicate_share)
    scores: dict[str, dict] = {}
    for name, thresholds in (("fastdup (seed thresholds)", SEED_THRESHOLDS),
                             ("fastdup (summary() defaults)", SUMMARY_DEFAULTS)):
        baseline = baseline_manifest(outputs, dataset, thresholds)
        scores[name] = score_manifest(baseline, pairs_from_groups(baseline), truth.files, truth_rel, duplicate_share)
        scores[name]["seconds"] = round(outputs.seconds, 1)
        scores[name]["thresholds"] = thresholds.__dict__
    if manifest is None:
        print(f"Curate skipped: {curate['skipped']}", flush=True)
    else:
        scores["Curate"] = score_manifest(manifest, pairs, truth.files, truth_rel, duplicate_share)
        scores["Curate"]["seconds"] = curate["seconds"]
        print(f"Curate: {curate['seconds']:.1f} s", flush=True)
    false_matches = (check_false_matches(args.rsscn7.resolve(), args.false_match_pairs)
                     if args.false_match_pairs > 0 else None)
    if false_matches is not None:
        print(f"false-match check: {len(false_matches['accepted'])} of {false_matches['pairs']} accepted", flush=True)

    comp = composition(truth)
    table = markdown_table(scores)
    command = shlex.join(["python", "-m", "bench.run_quality", *(sys.argv[1:] if argv is None else argv)])
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    report = "\n\n".join([
        "# Curate quality benchmark",
        f"Command: `{command}`  \nDate: {date}  \n"
        + "Machine: {cpu}, {cores} cores, {ram_gib} GiB RAM, Python {python}".format(**machine()),
        "## Dataset\n\n" + frame_to_markdown(comp),
        truth_summary(truth_rel, duplicate_share),
        "## Scores\n\nRatios with (numerator/denominator). Related pairs are the rows of Curate's `pairs.parquet` "
        "(all pairs within a `dup_group` for fastdup, recorded as duplicates), same-bytes sets closed; a pair is "
        "right when both files are in one true group (closure of injected and natural pairs). Duplicate sets: "
        "closure of the true exact and duplicate pairs. Leaks: true pairs from train or unlabeled to val.\n\n"
        + table,
        "## Curate run\n\n" + curate_summary(curate),
        *(["## Verifier on random distinct tiles of one class\n\n" + false_match_summary(false_matches)]
          if false_matches is not None else []),
        *(f"## {name}: wrong related pairs\n\n" + pair_list(s["detection"]["false_pairs"], dataset)
          for name, s in scores.items() if s["detection"]["false_pairs"]),
        *(f"## {name}: relation and decision mistakes\n\n" + decision_list(s, dataset)
          for name, s in scores.items() if decision_list(s, dataset)),
    ]) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "quality.md").write_text(report)
    (args.results / "quality.json").write_text(json.dumps({
        "command": command, "date": date,
        "machine": machine(), "dataset": {"root": str(dataset), "build_seconds": round(build_seconds, 1),
                                          "composition": comp.to_dict(), "true_pairs": len(truth.pairs)},
        "duplicate_share": duplicate_share,
        "fastdup_seconds": round(outputs.seconds, 1), "curate": curate, "scores": scores,
        "false_match_check": false_matches,
    }, indent=1, default=str))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
