"""The `curate` Prefect flow and its command line: ingest → similarity → verify → relations → classify →
expectations → outputs.

    python -m flows.curate [--split NAME=DIR ...] [--out DIR] [--config FILE] [--set KEY=VALUE ...]
                           [--dask-address ADDRESS] [--dry-run]

Exit status: 0 when the quality gate passes, 1 when it fails (all outputs are still written), 2 for a usage,
configuration or input error (one line on standard error names it), 3 for an internal error (a bug).
"""

# No `from __future__ import annotations` here: Prefect 3.9 cannot resolve pydantic parameter types from strings.
import argparse
import os
import sys
import time
import traceback
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

import tasks
from flows.runners import chunk_map, concurrent_chunks
from tasks.classify import classify
from tasks.config import ROOT, CurateConfig, load_config
from tasks.demo import DEMO_SPLITS, build_demo_dataset
from tasks.errors import ConfigError, CurateError, DatasetError, GateFailed
from tasks.expectations import GateResult, run_expectations
from tasks.ingest import find_files, ingest
from tasks.outputs import (
    OutputPaths,
    exclusive_output,
    new_staging,
    publish,
    summarize,
    summary_markdown,
    write_staged,
)
from tasks.overrides import read_overrides
from tasks.relations import build_relations, pairs_with_paths
from tasks.schema import Band, Col
from tasks.similarity import SIMILARITY, Similarity, compute_similarity
from tasks.verify import verify_candidates

DEMO_DIR = ROOT / "data" / "demo"
CURATED_DIR = ROOT / "data" / "curated"


class CurateResult(BaseModel):
    """Where a run wrote its outputs and what the gate decided."""

    out: str
    manifest: str
    report: str
    summary: str
    gate_passed: bool
    message: str


def cache_folder(config: CurateConfig) -> Path | None:
    """The content cache's folder (relative paths are relative to the project folder), or None."""
    return ROOT / config.cache_dir if config.cache_dir else None


# Stages: thin wrappers over the plain functions in `tasks/`. No caching on DataFrame inputs (hashing is slow).
@task(name="relations", cache_policy=NO_CACHE)
def relations_task(files: pd.DataFrame, matches: pd.DataFrame, duplicate_share: float) -> pd.DataFrame:
    return build_relations(files, matches, duplicate_share)


@task(name="classify", cache_policy=NO_CACHE)
def classify_task(
    files: pd.DataFrame, similarity: Similarity, relations: pd.DataFrame, config: CurateConfig, overrides: dict
) -> pd.DataFrame:
    return classify(files, similarity, relations, config, overrides)


@task(name="expectations", cache_policy=NO_CACHE)
def expectations_task(
    manifest: pd.DataFrame, pairs: pd.DataFrame, config: CurateConfig, docs_dir: Path
) -> GateResult:
    return run_expectations(manifest, pairs, config, docs_dir)


@task(name="write-outputs", cache_policy=NO_CACHE)
def write_outputs_task(
    staging: Path,
    out: Path,
    manifest: pd.DataFrame,
    pairs: pd.DataFrame,
    summary: dict,
    gate: GateResult,
    run_metadata: dict,
    title: str,
    similarity: Similarity,
    bands: dict[Band, float],
) -> OutputPaths:
    write_staged(
        staging, manifest, pairs, summary, gate, run_metadata, title, similarity.pairs[SIMILARITY].to_numpy(), bands
    )
    return publish(staging, out)


@task(name="publish-artifacts", cache_policy=NO_CACHE)
def publish_artifacts_task(summary: dict, paths: OutputPaths, title: str) -> None:
    """A Markdown summary, a table of issue counts and a link to the report, on the flow run in the Prefect UI."""
    create_markdown_artifact(summary_markdown(summary, title, paths.out), key="curate-summary", description=title)
    create_table_artifact(
        [{"issue": name, "images": value["count"], "of": value["of"]} for name, value in summary["issues"].items()],
        key="curate-issues",
        description="Images per issue, out of all files",
    )
    create_link_artifact(paths.report.as_uri(), link_text="Curate report", key="curate-report")


def resolve_splits(splits: Mapping[str, str] | None) -> dict[str, Path]:
    """The split folders to curate; without any, the demo dataset (generated on first use)."""
    if not splits:
        build_demo_dataset(DEMO_DIR)
        return {name: DEMO_DIR / name for name in DEMO_SPLITS}
    resolved = {}
    for name, folder in splits.items():
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise DatasetError(f"split {name!r}: {folder} is not a folder")
        resolved[name] = path.resolve()
    return resolved


def dataset_name(splits: Mapping[str, Path], config: CurateConfig) -> str:
    """The configured name, else the name of the folder that holds the split folders."""
    if config.dataset_name:
        return config.dataset_name
    common = Path(os.path.commonpath([str(folder) for folder in splits.values()]))
    if len(splits) == 1:  # a lone split folder is named after its split; its parent names the dataset
        common = common.parent
    return common.name or "dataset"


def plan(
    splits: Mapping[str, str] | None, out: str | None, config: CurateConfig
) -> tuple[dict[str, Path], str, Path]:
    """The split folders, the dataset's name and the output folder a run would use."""
    folders = resolve_splits(splits)
    name = dataset_name(folders, config) if splits else "demo"
    return folders, name, Path(out).expanduser().resolve() if out else CURATED_DIR / name


def dry_run(splits: Mapping[str, str] | None, out: str | None, config: CurateConfig) -> str:
    """What a run would process: files per split and label, files left out, the output folder, then every path."""
    folders, name, out_dir = plan(splits, out, config)
    inventory = find_files(folders, config.extensions)
    counts = pd.DataFrame(
        [(found.split, found.label or "(unlabeled)") for found in inventory.images], columns=["split", "label"]
    ).value_counts(sort=False)
    lines = [f"dataset {name}: {len(inventory.images)} image files, {len(inventory.ignored)} other files left out",
             f"output folder: {out_dir}"]
    lines += [f"  {split:<12} {label:<24} {count:>8}" for (split, label), count in counts.items()]
    lines += [str(found.path) for found in inventory.images]
    return "\n".join(lines)


def _run_metadata(config: CurateConfig, similarity: Similarity, started: datetime, timings: dict) -> dict:
    versions = {package: metadata.version(package) for package in ("prefect", "great-expectations", "pandas", "pyarrow")}
    return {
        "curate_version": tasks.__version__,
        "engine": similarity.engine,
        "versions": versions,
        "config": config.model_dump(mode="json"),
        "run_started": started.isoformat(),
        "run_finished": datetime.now(timezone.utc).isoformat(),
        "stage_seconds": {stage: round(seconds, 3) for stage, (seconds, _) in timings.items()},
        # This process's CPU (all its threads; not chunks run by other processes, under a process or Dask runner).
        "stage_cpu_seconds": {stage: round(cpu, 3) for stage, (_, cpu) in timings.items()},
    }


def _timed(timings: dict[str, tuple[float, float]], stage: str, function, *args, **kwargs):
    clock, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    timings[stage] = (time.perf_counter() - clock, time.process_time() - cpu)
    return result


@flow(name="curate", log_prints=True)
def curate(
    splits: dict[str, str] | None = None, out: str | None = None, config: CurateConfig = CurateConfig()
) -> State:
    """Curate image folders: find duplicates, outliers and quality issues, decide, gate, write the manifest."""
    started = datetime.now(timezone.utc)
    folders, name, out_dir = plan(splits, out, config)
    overrides = read_overrides(config.decisions.overrides) if config.decisions.overrides else {}
    inventory = find_files(folders, config.extensions)  # before the output folder is touched: no images, no run
    with exclusive_output(out_dir):
        staging = new_staging(out_dir)
        timings: dict[str, tuple[float, float]] = {}  # wall and CPU seconds
        with chunk_map(config.runner) as chunks:
            # Ingest, similarity and verification run in the flow itself: their chunks are the task runs (a chunk
            # submitted from inside another task run cannot be sent to Dask: its context does not serialise).
            files = _timed(timings, "ingest", ingest, inventory, cache_dir=cache_folder(config), run_chunks=chunks,
                           chunk_size=config.expert.runner.chunk_size, concurrent_chunks=concurrent_chunks(config.runner))
            get_run_logger().info("ingest: %d files, %d readable, %d non-image files ignored",
                                  len(files), int(files["valid"].sum()), len(inventory.ignored))
            similarity = _timed(
                timings, "similarity", compute_similarity, files, config.expert.similarity, out_dir / ".work",
                cache_dir=cache_folder(config), run_chunks=chunks, chunk_size=config.expert.runner.chunk_size,
            )
            get_run_logger().info("similarity: %d images embedded, the others' vectors reused from the cache",
                                  similarity.embedded)
            matches = _timed(
                timings, "verify", verify_candidates, files, similarity.pairs, config.expert.verification,
                cache_dir=cache_folder(config), run_chunks=chunks, chunk_size=config.expert.runner.chunk_size,
                concurrent_chunks=concurrent_chunks(config.runner),
                feature_cache_bytes=config.expert.runner.feature_cache_mb * 2**20,
            )
        relations = _timed(timings, "relations", relations_task, files, matches, config.decisions.duplicate_share)
        manifest = _timed(timings, "classify", classify_task, files, similarity, relations, config, overrides)
        pairs = pairs_with_paths(relations, manifest.set_index(Col.ROW)[Col.PATH])
        gate = _timed(timings, "expectations", expectations_task, manifest, pairs, config,
                      staging / "quality" / "data_docs")
        bands = config.expert.bands.thresholds()
        summary = summarize(manifest, pairs, similarity, bands, [str(p) for p in inventory.ignored], gate)
        title = f"Curate report: {name}"
        paths = write_outputs_task(
            staging, out_dir, manifest, pairs, summary, gate, _run_metadata(config, similarity, started, timings),
            title, similarity, bands,
        )
    publish_artifacts_task(summary, paths, title)
    if not gate.success:
        return Failed(message=gate.message(), data=GateFailed(f"{gate.message()}; outputs written to {paths.out}"))
    return Completed(
        message=gate.message(),
        data=CurateResult(
            out=str(paths.out), manifest=str(paths.manifest), report=str(paths.report), summary=str(paths.summary),
            gate_passed=gate.success, message=gate.message(),
        ),
    )


def parse_split(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise ConfigError(f"--split expects NAME=DIR, got {text!r}")
    return name, folder


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, without argparse's usage dump
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m flows.curate",
        description="Curate image folders: duplicates, outliers, quality issues, a manifest and cleaned splits.",
        epilog="Exit status: 0 gate passed, 1 gate failed (outputs written), 2 usage, configuration or input "
        "error, 3 internal error.",
    )
    parser.add_argument("--split", action="append", default=[], metavar="NAME=DIR",
                        help="a split folder; images in its subfolders take the subfolder name as label "
                        "(repeatable; default: the demo dataset)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: data/curated/<dataset name>/)")
    parser.add_argument("--config", metavar="FILE", type=Path, help="configuration YAML (default: configs/default.yaml)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list what would be processed (files per split and label, the output folder) and exit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="override one configuration key, dotted (e.g. quality.dark_z=2.5)")
    parser.add_argument("--dask-address", metavar="ADDRESS",
                        help="run the per-image work on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 "
                        "(the same as --set runner.kind=dask --set runner.dask_address=ADDRESS)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, run the flow, and turn the outcome into an exit status. Never raises for user errors."""
    try:
        args = build_parser().parse_args(argv)
        dask = ["runner.kind=dask", f"runner.dask_address={args.dask_address}"] if args.dask_address else []
        config = load_config(args.config, [*args.settings, *dask])
        splits = dict(parse_split(text) for text in args.split)
        if len(splits) != len(args.split):
            raise ConfigError("--split names must be distinct")
        # Fail fast, before Prefect starts: the walk is repeated by the flow, a small price for a one-line error.
        if splits:
            find_files(resolve_splits(splits), config.extensions)
        if config.decisions.overrides:
            read_overrides(config.decisions.overrides)
        if args.dry_run:
            print(dry_run(splits or None, args.out, config))
            return 0
    except _UsageError as error:
        print(f"curate: error: {error}", file=sys.stderr)
        return 2
    except CurateError as error:
        print(f"curate: error: {error}", file=sys.stderr)
        return error.exit_status

    state = curate(splits=splits or None, out=args.out, config=config, return_state=True)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, CurateResult):
        print(f"{outcome.message}\nmanifest: {outcome.manifest}\nreport:   {outcome.report}")
        return 0
    if isinstance(outcome, CurateError):
        prefix = "curate: " if isinstance(outcome, GateFailed) else "curate: error: "
        print(f"{prefix}{outcome}", file=sys.stderr)
        return outcome.exit_status
    # A bug, not a user error: show the traceback, and exit 3 so it is never mistaken for a failed gate.
    print(f"curate: internal error: {outcome!r}", file=sys.stderr)
    if isinstance(outcome, BaseException):
        traceback.print_exception(outcome, file=sys.stderr)
    return 3


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the listing was piped into `head`: not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
