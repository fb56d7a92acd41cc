"""Classification, gate and writing at scale (issue 4): generated manifest rows, no images decoded, no engine.

    .venv/bin/python -m bench.scale_rows [--rows N] [--seed S] [--work DIR] [--no-images] [--profile]
                                         [--save-manifest FILE] [--results FILE]

Generates, with a fixed seed, what the stages before classification would hand over for N image files (default
1,000,000): an ingest frame with exactly the columns and dtypes of `tasks.ingest.ingest` (colour signatures
included), a `tasks.similarity.Similarity` of unordered kNN pairs (k=10 directed neighbours per image, through
`tasks.similarity.unordered_pairs` as the real stage does) and a verified-matches frame like
`tasks.verify.verify_candidates` returns. Then it runs, timed one by one as `flows.curate` chains them:
classify, run_expectations (Data Docs into the staging folder), summarize, write_staged and publish. Importing
Great Expectations, which the flow pays once inside its expectations stage, is timed on its own line. Each stage
gets its wall-clock seconds, its CPU seconds (all threads; steadier than wall time on a shared machine) and the
process's peak RSS while it ran (the kernel's mark is reset before each stage).

What is generated (shares of N): three splits 70/15/15 (train, val, test) over 24 classes, 1 % of files
unlabeled (directly in a split folder); 3 % of files in duplicate or overlap groups (sizes 2 to 6; three
quarters duplicates, of whose copies 30 % are byte-identical, one quarter chains of overlapping tiles; 20 % of
copies in another split, 5 % under another label); 0.05 % corrupt files (truncated, empty, unreadable, not an
image); 0.01 % the engine could not read; 0.1 % blurry, 0.1 % dark, 0.05 % washed out, 0.03 % out of domain
(low similarity to every neighbour).

Paths: every path lies below `--work`/images. Only the files the report can show (members of duplicate groups
and clusters, and the injected defects) exist there, as hard links to a pool of 64 real 256 px JPEG tiles, so
the report's thumbnails cost what they would on real data; every other path does not exist. The report copes
with a missing file: its card reads "no thumbnail" (the failed open costs microseconds and counts towards
`ReportLimits.max_thumbnails`). `--no-images` creates no files at all.

Prints a table and writes `bench/results/scale_rows.json` (per row count, the last ten runs).
`--profile` also writes a cProfile of the timed stages to `bench/results/scale_rows-<N>.prof`.
"""

import argparse
import cProfile
import datetime as dt
import importlib
import io
import json
import os
import pstats
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from bench.run_quality import machine
from tasks import outputs
from tasks.classify import classify
from tasks.config import CurateConfig
from tasks.expectations import run_expectations
from tasks.imagestats import (
    PART_SIGNATURES, PART_WINDOWS, SIGNATURE, SIGNATURE_LENGTH, STRUCTURE, STRUCTURE_FREQUENCIES,
)
from tasks.geometry import IDENTITY
from tasks.outputs import new_staging, publish, summarize, write_staged
from tasks.relations import build_relations, pairs_with_paths
from tasks.schema import Check, Col, MatchCol, Relation
from tasks.similarity import PAIR_A, PAIR_B, SIMILARITY, Similarity, unordered_pairs
from tasks.verify import Stage

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEFAULT_WORK = Path("/tmp/curate-scale-rows")

SPLITS = {"train": 0.70, "val": 0.15, "test": 0.15}
LABELS = sorted([
    "airport", "bareland", "baseball_field", "beach", "bridge", "center", "church", "commercial", "dense_residential",
    "desert", "farmland", "forest", "industrial", "meadow", "medium_residential", "mountain", "park", "parking",
    "playground", "pond", "port", "river", "sparse_residential", "viaduct",
])
K = 10  # directed neighbours per image, as similarity.nearest_neighbors
SHARES = {
    "unlabeled": 0.01, "grouped": 0.03, "corrupt": 0.0005, "unanalysed": 0.0001,
    "blurry": 0.001, "dark": 0.001, "bright": 0.0005, "outlier": 0.0003,
}
GROUP_SIZES, GROUP_SIZE_P = [2, 3, 4, 5, 6], [0.75, 0.15, 0.05, 0.03, 0.02]
DUPLICATE, OVERLAP = Relation.DUPLICATE.value, Relation.OVERLAP.value
DUPLICATE_TRANSFORMS = ["same", "rescale", "crop+rescale", "rotate90", "rotate270", "hflip", "rotate180", "crop"]
OVERLAP_TRANSFORMS = ["shift", "shift+rescale", "rotate90+shift", "hflip+shift"]
CORRUPT_ERRORS = [
    ("cannot decode image: image file is truncated (23 bytes not processed)", True),
    ("not an image in a format Pillow can read", True),
    ("empty file (0 bytes)", True),
    ("cannot read file: Permission denied", False),  # no bytes read: no hash
]
ENGINE_ERRORS = ["ERROR_CORRUPT_IMAGE", "not read by fastdup"]
POOL = 64  # distinct real JPEG tiles behind the files that exist


@dataclass(frozen=True)
class Generated:
    files: pd.DataFrame
    similarity: Similarity
    matches: pd.DataFrame
    counts: dict[str, int]  # what was injected


def _layout(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Split and label of every file, in the order `find_files` walks them: split by split, files directly in the
    split folder first (unlabeled), then label folders in name order, names sorted."""
    split_names = list(SPLITS)
    per_split = rng.multinomial(n, list(SPLITS.values()))
    frames = []
    for split, count in zip(split_names, per_split):
        unlabeled = rng.binomial(count, SHARES["unlabeled"])
        per_label = rng.multinomial(count - unlabeled, [1 / len(LABELS)] * len(LABELS))
        labels = [None] * unlabeled + [label for label, m in zip(LABELS, per_label) for _ in range(m)]
        frames.append(pd.DataFrame({Col.SPLIT: split, Col.LABEL: pd.array(labels, dtype="object")}))
    return pd.concat(frames, ignore_index=True)


def _pick_groups(layout: pd.DataFrame, eligible: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
    """Duplicate and overlap groups: an original and copies, mostly from its own split and label."""
    n = len(layout)
    block_key = layout[Col.SPLIT] + "/" + layout[Col.LABEL].fillna("")
    codes, blocks = pd.factorize(block_key)
    starts = np.searchsorted(codes, np.arange(len(blocks)))  # blocks are contiguous in walk order
    ends = np.append(starts[1:], n)
    block_of = {name: i for i, name in enumerate(blocks)}
    used = ~eligible.copy()
    target = int(n * SHARES["grouped"])
    groups: list[list[int]] = []
    members = 0
    splits, labels = layout[Col.SPLIT].to_numpy(), layout[Col.LABEL].to_numpy()
    while members < target:
        original = int(rng.integers(n))
        if used[original]:
            continue
        size = int(rng.choice(GROUP_SIZES, p=GROUP_SIZE_P))
        group = [original]
        for _ in range(100 * size):
            if len(group) == size:
                break
            split, label = splits[original], labels[original]
            draw = rng.random()
            if draw < 0.20:  # another split
                split = rng.choice([s for s in SPLITS if s != split])
            elif draw < 0.25:  # another label
                label = rng.choice(LABELS)
            block = block_of.get(f"{split}/{label if isinstance(label, str) else ''}")
            if block is None:
                continue
            candidate = int(rng.integers(starts[block], ends[block]))
            if not used[candidate] and candidate not in group:
                group.append(candidate)
        if len(group) < 2:
            continue
        used[group] = True
        groups.append(group)
        members += len(group)
    return groups


def _tile_pool(folder: Path, rng: np.random.Generator) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pool = []
    for i in range(POOL):
        coarse = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
        path = folder / f"tile{i:02d}.jpg"
        Image.fromarray(coarse).resize((256, 256), Image.BICUBIC).save(path, quality=85)
        pool.append(path)
    return pool


def generate(n: int, seed: int = 0, work: Path = DEFAULT_WORK, images: bool = True) -> Generated:
    """The ingest frame, similarity pairs and verified matches for `n` files (see the module docstring)."""
    rng = np.random.default_rng(seed)
    layout = _layout(n, rng)
    rows = np.arange(n, dtype=np.int64)
    root = work / "images"
    paths = [f"{root}/{split}/{label}/{row:07d}.jpg" if isinstance(label, str) else f"{root}/{split}/{row:07d}.jpg"
             for row, split, label in zip(rows.tolist(), layout[Col.SPLIT], layout[Col.LABEL])]

    # Who gets what: disjoint sets of rows.
    free = np.ones(n, dtype=bool)

    def take(share: str) -> np.ndarray:
        count = max(1, round(n * SHARES[share]))
        chosen = rng.choice(np.flatnonzero(free), size=count, replace=False)
        free[chosen] = False
        return np.sort(chosen)

    corrupt = take("corrupt")
    unanalysed = take("unanalysed")
    blurry, dark, bright, outlier = take("blurry"), take("dark"), take("bright"), take("outlier")
    groups = _pick_groups(layout, free, rng)

    # Ingest statistics: normal aerial tiles, then the defects.
    contrast = np.clip(rng.normal(42.0, 9.0, n), 5.0, 120.0)
    brightness = np.clip(rng.normal(115.0, 16.0, n), 20.0, 235.0)
    sharpness = rng.normal(-0.6, 0.25, n)
    sharpness[blurry] -= rng.uniform(1.5, 2.5, len(blurry))
    fine_detail = rng.normal(-0.55, 0.1, n)
    fine_detail[blurry] -= rng.uniform(0.5, 0.7, len(blurry))
    brightness[dark] /= rng.uniform(8.0, 14.0, len(dark))
    contrast[dark] /= 8.0
    brightness[bright] = rng.uniform(240.0, 250.0, len(bright))
    contrast[bright] = rng.uniform(1.0, 4.0, len(bright))
    black_level = np.clip(np.round(brightness - 2.3 * contrast), 0.0, 255.0)
    black_level[bright] = np.round(brightness[bright] - 2.0)
    blur = contrast**2 * 10**sharpness
    side = rng.choice([256, 512, 600], size=n, p=[0.8, 0.15, 0.05])
    width, height = side, np.where(side == 600, 400, side)
    size_bytes = np.round(np.exp(rng.normal(10.0, 0.3, n)) * (width * height / 65536)).astype(np.int64)
    formats = rng.choice(np.array(["JPEG", "PNG", "TIFF"], dtype=object), size=n, p=[0.9, 0.08, 0.02])
    hashes = np.frombuffer(rng.bytes(32 * n), dtype=np.uint8).reshape(n, 32)
    sha256 = [row.tobytes().hex() for row in hashes]
    label_codes = pd.Categorical(layout[Col.LABEL], categories=LABELS).codes
    centres = rng.random((len(LABELS) + 1, SIGNATURE_LENGTH), dtype=np.float32) ** 4
    signatures = centres[label_codes] + 0.05 * rng.random((n, centres.shape[1]), dtype=np.float32)
    signatures /= np.linalg.norm(signatures, axis=1, keepdims=True)
    # Structure signatures matter only to candidate selection, which this benchmark does not run: random levels.
    structures = rng.integers(-127, 128, (n, STRUCTURE_FREQUENCIES**2), dtype=np.int8)

    # Groups: byte-identical copies share everything ingest measured; other copies are near.
    relations, edges = [], []
    exact_copies = duplicate_groups = 0
    for group in groups:
        original, copies = group[0], group[1:]
        relation = DUPLICATE if rng.random() < 0.75 else OVERLAP
        duplicate_groups += relation == DUPLICATE
        for position, copy in enumerate(copies):
            if relation == DUPLICATE and rng.random() < 0.30:
                exact_copies += 1
                for array in (contrast, brightness, sharpness, fine_detail, black_level, blur, width, height,
                              size_bytes, formats):
                    array[copy] = array[original]
                sha256[copy] = sha256[original]
                signatures[copy] = signatures[original]
                structures[copy] = structures[original]
                transform = "same"
            else:
                transform = str(rng.choice(DUPLICATE_TRANSFORMS if relation == DUPLICATE else OVERLAP_TRANSFORMS))
            # A duplicate joins its original; an overlap its predecessor in a chain of tiles.
            other = original if relation == DUPLICATE else group[position]
            edges.append((other, copy, transform))
            relations.append(relation)

    valid = np.ones(n, dtype=bool)
    valid[corrupt] = False
    errors = np.full(n, None, dtype=object)
    error_kind = rng.integers(len(CORRUPT_ERRORS), size=len(corrupt))
    errors[corrupt] = [CORRUPT_ERRORS[kind][0] for kind in error_kind]
    hashed = np.ones(n, dtype=bool)
    hashed[corrupt[[not CORRUPT_ERRORS[kind][1] for kind in error_kind]]] = False
    empty = corrupt[error_kind == 2]
    size_bytes[empty] = 0

    def masked(values: np.ndarray, dtype: str, keep: np.ndarray = valid) -> pd.Series:
        return pd.Series(values).where(keep).astype(dtype)

    # Each part's colours: the whole image's, slightly changed, as the uint8 levels ingest stores.
    parts = np.empty((n, PART_WINDOWS * signatures.shape[1]), np.uint8)
    for start in range(0, n, 65536):  # in blocks: float copies of a million rows' parts would take gigabytes
        block = np.tile(signatures[start : start + 65536], PART_WINDOWS)
        block *= 0.8 + 0.4 * rng.random(block.shape, dtype=np.float32)
        parts[start : start + 65536] = np.round(np.clip(block, 0.0, 1.0) * 255.0)
    signature_columns = {}
    for column, values in ((SIGNATURE, signatures), (PART_SIGNATURES, parts), (STRUCTURE, structures)):
        signature_columns[column] = np.empty(n, dtype=object)
        signature_columns[column][:] = list(values)
        signature_columns[column][corrupt] = None
    files = pd.DataFrame({Col.ROW: rows})
    files[Col.PATH] = pd.Series(paths, dtype="str")
    files[Col.SPLIT] = layout[Col.SPLIT].astype("str")
    files[Col.LABEL] = layout[Col.LABEL].astype("string")
    files[Col.VALID] = valid
    files[Col.ERROR] = pd.Series(errors, dtype="string")
    files[Col.SHA256] = pd.Series(sha256, dtype="string").where(hashed)
    files[Col.BYTES] = masked(size_bytes, "Int64", hashed)
    files[Col.WIDTH] = masked(width, "Int64")
    files[Col.HEIGHT] = masked(height, "Int64")
    files[Col.FORMAT] = pd.Series(formats, dtype="string").where(valid)
    files[Col.BRIGHTNESS] = masked(brightness, "float64")
    files[Col.CONTRAST] = masked(contrast, "float64")
    files[Col.BLUR] = masked(blur, "float64")
    files[Col.SHARPNESS] = masked(sharpness, "float64")
    files[Col.FINE_DETAIL] = masked(fine_detail, "float64")
    files[Col.BLACK_LEVEL] = masked(black_level, "float64")
    for column, values in signature_columns.items():
        files[column] = values

    # kNN: each analysed image's K nearest neighbours among images of its own split and class nearby in walk
    # order, plus the group edges; through unordered_pairs as compute_similarity does.
    analysed = valid.copy()
    analysed[unanalysed] = False
    searched = np.flatnonzero(analysed)
    m = len(searched)
    source = np.repeat(np.arange(m), K)
    offsets = rng.integers(1, 300, size=m * K) * rng.choice([-1, 1], size=m * K)
    target = (source + offsets) % m
    base = np.clip(rng.normal(0.84, 0.03, m), 0.6, 0.97)
    rank = np.tile(np.arange(K), m)
    similarity = np.minimum(base[source] - 0.004 * rank - np.abs(rng.normal(0.0, 0.01, m * K)), 0.975)
    is_outlier = np.zeros(n, dtype=bool)
    is_outlier[outlier] = True
    lonely = is_outlier[searched[source]] | is_outlier[searched[target]]
    similarity[lonely] = rng.normal(0.35, 0.05, int(lonely.sum()))
    position = np.full(n, -1, dtype=np.int64)
    position[searched] = np.arange(m)
    group_a = np.array([a for a, _, _ in edges], dtype=np.int64)
    group_b = np.array([b for _, b, _ in edges], dtype=np.int64)
    group_transform = np.array([t for _, _, t in edges], dtype=object)
    group_relation = np.array(relations, dtype=object)
    n_edges = len(edges)
    group_similarity = np.where(
        group_transform == "same", rng.uniform(0.995, 1.0, n_edges),
        np.where(group_relation == DUPLICATE, rng.uniform(0.93, 0.995, n_edges), rng.uniform(0.85, 0.95, n_edges)))
    neighbours = pd.DataFrame({
        "source": np.concatenate([source, position[group_a]]),
        "target": np.concatenate([target, position[group_b]]),
        SIMILARITY: np.concatenate([similarity, group_similarity]),
    })
    pairs = unordered_pairs(neighbours, searched)
    sim = Similarity(
        pairs=pairs, engine="fastdup 2.54", skipped=None, embedded=m,
        unanalysed={int(row): str(rng.choice(ENGINE_ERRORS)) for row in unanalysed},
    )

    # Verified matches, as verify_candidates returns them (only accepted pairs), with shares that make a duplicate
    # or an overlap of each at the default decisions.duplicate_share.
    duplicate = group_relation == DUPLICATE
    matches = pd.DataFrame({
        PAIR_A: np.minimum(group_a, group_b), PAIR_B: np.maximum(group_a, group_b),
    })
    matches = matches.merge(pairs, on=[PAIR_A, PAIR_B], how="left")
    matches[MatchCol.COLOUR_SIMILARITY] = np.einsum("ij,ij->i", signatures[group_a], signatures[group_b]
                                                    ).astype(np.float32)
    matches[MatchCol.STAGE] = pd.Series(np.where(duplicate, Stage.KEYPOINTS.value, Stage.CORRELATION.value),
                                        dtype="str")
    matches[MatchCol.EVIDENCE] = pd.Series(np.where(duplicate, Check.KEYPOINTS.value, Check.PHASE_CORRELATION.value),
                                           dtype="str")
    matches[MatchCol.REASON] = pd.Series([""] * len(edges), dtype="str")
    # Keypoint matches measure an inlier ratio, correlation matches a correlation.
    scores = np.where(duplicate, rng.uniform(0.6, 0.95, len(edges)), rng.uniform(0.3, 0.6, len(edges)))
    matches[MatchCol.INLIER_RATIO] = np.where(duplicate, scores, np.nan)
    matches[MatchCol.CORRELATION] = np.where(duplicate, np.nan, scores)
    matches[MatchCol.INLIERS] = rng.integers(20, 200, len(edges)).astype(np.int64)
    matches[MatchCol.TRANSFORM] = pd.Series(group_transform, dtype="str")
    for share in (MatchCol.SHARE_A, MatchCol.SHARE_B):
        matches[share] = np.where(duplicate, rng.uniform(0.9, 1.0, len(edges)), rng.uniform(0.2, 0.6, len(edges)))
    matches[MatchCol.A_TO_B] = pd.Series([IDENTITY.ravel()] * len(edges), dtype=object)
    matches = matches.sort_values([PAIR_A, PAIR_B]).reset_index(drop=True)

    counts = {
        "files": n, "splits": {s: int((layout[Col.SPLIT] == s).sum()) for s in SPLITS}, "labels": len(LABELS),
        "unlabeled": int(layout[Col.LABEL].isna().sum()), "groups": len(groups), "duplicate_groups": duplicate_groups,
        "grouped_files": sum(len(g) for g in groups), "exact_copies": exact_copies,
        "matches": len(matches), "overlap_matches": int((~duplicate).sum()), "corrupt": len(corrupt),
        "unanalysed": len(unanalysed), "blurry": len(blurry), "dark": len(dark), "bright": len(bright),
        "outlier": len(outlier), "pairs": len(pairs), "directed_edges": len(neighbours),
    }
    if images:
        shown = np.zeros(n, dtype=bool)
        shown[np.concatenate([group_a, group_b, blurry, dark, bright, outlier])] = True
        clustered = pairs[pairs[SIMILARITY] >= CurateConfig().expert.similarity.cluster_similarity]
        shown[clustered[PAIR_A].to_numpy()] = shown[clustered[PAIR_B].to_numpy()] = True
        counts["files_on_disk"] = _write_images(work, [paths[i] for i in np.flatnonzero(shown)],
                                                [paths[i] for i in corrupt], rng)
    return Generated(files=files, similarity=sim, matches=matches, counts=counts)


def _write_images(work: Path, shown: list[str], corrupt: list[str], rng: np.random.Generator) -> int:
    """Hard links to a pool of real tiles for the files the report can show; garbage bytes for corrupt ones."""
    shutil.rmtree(work / "images", ignore_errors=True)
    pool = _tile_pool(work / "pool", rng)
    folders = {os.path.dirname(path) for path in shown + corrupt}
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    for i, path in enumerate(shown):
        try:
            os.link(pool[i % POOL], path)
        except OSError:  # another file system, or too many links
            os.symlink(pool[i % POOL], path)
    for path in corrupt:
        Path(path).write_bytes(b"\xff\xd8\xff truncated")
    return len(shown) + len(corrupt)


# ---------------------------------------------------------------- timing


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: `5` into /proc/self/clear_refs), so each stage has its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stages:
    """Runs callables, recording each one's seconds and the process's peak RSS while it ran."""

    def __init__(self, profiler: cProfile.Profile | None = None):
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}  # all threads of the process: less sensitive to a busy machine
        self.peak_mib: dict[str, float] = {}
        self.profiler = profiler

    def run(self, name: str, function: Callable[..., Any], *args: Any) -> Any:
        _reset_peak()
        if self.profiler:
            self.profiler.enable()
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args)
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - cpu
            if self.profiler:
                self.profiler.disable()
            self.peak_mib[name] = max(self.peak_mib.get(name, 0.0), _peak_mib())


def run_stages(generated: Generated, out: Path, profiler: cProfile.Profile | None = None) -> tuple[Stages, dict]:
    """The stages after verification, as `flows.curate.curate` chains them; returns timings and the summary."""
    config = CurateConfig()
    bands = config.expert.bands.thresholds()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    stages = Stages(profiler)
    staging = new_staging(out)
    relations = stages.run("relations", build_relations, generated.files, generated.matches,
                           config.decisions.duplicate_share)
    manifest = stages.run("classify", classify, generated.files, generated.similarity, relations, config, {})
    pairs = stages.run("pairs", pairs_with_paths, relations, manifest.set_index(Col.ROW)[Col.PATH])
    # The flow pays Great Expectations' import inside this stage, once per process: shown on its own line.
    stages.run("import GX", importlib.import_module, "great_expectations")
    gate = stages.run("expectations", run_expectations, manifest, pairs, config, staging / "quality" / "data_docs")
    summary = stages.run("summarize", summarize, manifest, pairs, generated.similarity, bands, [], gate)
    write_report = outputs.write_report
    report: dict[str, float] = {}

    def timed_report(*args: Any, **kwargs: Any) -> Path:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return write_report(*args, **kwargs)
        finally:
            report["seconds"], report["cpu"] = time.perf_counter() - start, time.process_time() - cpu

    outputs.write_report = timed_report  # to tell the report's share of writing apart
    try:
        metadata = {"benchmark": "scale_rows", "rows": len(manifest)}
        stages.run("write_staged", write_staged, staging, manifest, pairs, summary, gate, metadata,
                   "Curate report: scale_rows", generated.similarity.pairs[SIMILARITY].to_numpy(), bands)
    finally:
        outputs.write_report = write_report
    stages.run("publish", publish, staging, out)
    stages.seconds["of which report"] = report["seconds"]
    stages.cpu_seconds["of which report"] = report["cpu"]
    return stages, {"summary": summary, "manifest": manifest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_rows", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="manifest rows to generate (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"generated files and outputs ({DEFAULT_WORK})")
    parser.add_argument("--no-images", action="store_true", help="create no image files (every path is missing)")
    parser.add_argument("--profile", action="store_true", help="cProfile the stages into bench/results/")
    parser.add_argument("--save-manifest", type=Path, metavar="FILE",
                        help="also pickle the classified manifest there (to compare runs)")
    parser.add_argument("--results", type=Path, default=RESULTS / "scale_rows.json")
    args = parser.parse_args(argv)

    started = dt.datetime.now(dt.UTC)
    load_average = os.getloadavg()
    try:  # share of the last minute in which some runnable process waited for a CPU (Linux pressure stall)
        cpu_pressure = float(Path("/proc/pressure/cpu").read_text().split()[2].split("=")[1])
    except (OSError, IndexError, ValueError):
        cpu_pressure = None
    _reset_peak()
    clock = time.perf_counter()
    generated = generate(args.rows, args.seed, args.work, images=not args.no_images)
    generation_seconds = time.perf_counter() - clock
    generation_peak = _peak_mib()
    print(f"generated {args.rows:,} rows in {generation_seconds:.1f} s (peak RSS {generation_peak:,.0f} MiB): "
          + ", ".join(f"{k} {v:,}" for k, v in generated.counts.items() if isinstance(v, int)))

    profiler = cProfile.Profile() if args.profile else None
    stages, produced = run_stages(generated, args.work / "out", profiler)
    timed = [name for name in stages.seconds if not name.startswith("of which")]
    total = sum(stages.seconds[name] for name in timed)
    total_cpu = sum(stages.cpu_seconds[name] for name in timed)
    summary = produced["summary"]
    if args.save_manifest:
        produced["manifest"].to_pickle(args.save_manifest)

    print(f"\n{'stage':<18}{'seconds':>9}{'CPU s':>8}{'peak RSS MiB':>14}")
    for name, seconds in stages.seconds.items():
        peak = stages.peak_mib.get(name)
        print(f"{name:<18}{seconds:>9.2f}{stages.cpu_seconds[name]:>8.2f}{'' if peak is None else f'{peak:>14,.0f}'}")
    print(f"{'total':<18}{total:>9.2f}{total_cpu:>8.2f}{max(stages.peak_mib.values()):>14,.0f}")
    print(f"before the run: load average {' '.join(f'{x:.2f}' for x in load_average)}, CPU pressure (some, 60 s) "
          f"{cpu_pressure} %")
    print(f"gate: {'passed' if summary['gate']['success'] else 'FAILED'}; actions "
          + ", ".join(f"{k} {v['count']:,}" for k, v in summary["actions"].items())
          + "; issues " + ", ".join(f"{k} {v['count']:,}" for k, v in summary["issues"].items()))

    if profiler:
        RESULTS.mkdir(parents=True, exist_ok=True)
        prof_path = RESULTS / f"scale_rows-{args.rows}.prof"
        profiler.dump_stats(prof_path)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        print(text.getvalue())
        print(f"profile: {prof_path}")

    entry = {
        "command": "python -m bench.scale_rows " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": started.isoformat(timespec="seconds"), "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_average], "cpu_pressure_avg60_before": cpu_pressure, "generated": generated.counts,
        "generation_seconds": round(generation_seconds, 2), "generation_peak_rss_mib": round(generation_peak),
        "stage_seconds": {name: round(seconds, 3) for name, seconds in stages.seconds.items()},
        "total_seconds": round(total, 3),
        "stage_cpu_seconds": {name: round(seconds, 3) for name, seconds in stages.cpu_seconds.items()},
        "total_cpu_seconds": round(total_cpu, 3),
        "stage_peak_rss_mib": {name: round(peak) for name, peak in stages.peak_mib.items()},
        "peak_rss_mib": round(max(stages.peak_mib.values())), "profiled": bool(profiler),
        "gate_passed": summary["gate"]["success"],
        "actions": {k: v["count"] for k, v in summary["actions"].items()},
        "issues": {k: v["count"] for k, v in summary["issues"].items()},
        "duplicate_sets": summary["duplicate_sets"],
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    runs = results.setdefault("runs", {}).get(str(args.rows), [])
    results["runs"][str(args.rows)] = [*(runs if isinstance(runs, list) else [runs]), entry][-10:]
    args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results: {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
