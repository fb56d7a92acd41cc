"""Issue 24's cascade analysis: which cheap tests could settle candidate pairs before verification's expensive
stages, and what they would save. One command (not part of the unit tests):

    .venv/bin/python -m bench.cascade [--only quality|robustness|tiling-25|tiling-50|generated ...]
                                      [--work DIR] [--results DIR] [--fresh]

On the candidate pairs of five benchmarks (the quality benchmark's files, the robustness benchmark's, the tiled
scenes of `bench/tiling.py` at 25 % and at 50 % overlap, each tiling in one split as its benchmark runs it, and
3,000 of the speed benchmark's generated tiles, where every candidate is a negative), in this process and on one
thread, so that every time is the pair's own:

1. ingest, similarity and `select_candidates` as the flow runs them (no cache), then the second round of pairs
   that accepted pairs place over each other (`tasks.placement.predicted_overlaps`);
2. per image, timed: verification's features (`extract_features`, and its decode alone), and signatures computed
   from the decoded pixels: a PDQ-style hash (the signs of a 16 x 16 block of the DCT of a 64 x 64 grey image
   against their median, 256 bits) with the hashes of all eight flips and quarter turns from that one transform,
   the same block as a unit vector, and colour moments;
3. per pair, timed: the current verifier stage by stage (keypoints; correlation, of which the shift search;
   the finer keypoint pass), reproducing `verify_pairs`' verdict (checked against it), and each cheap test:
   the similarities on the candidate row (embedding, colour) and from ingest's signatures (structure, parts),
   the PDQ-style Hamming distance (least over the eight variants) and cosine, the colour-moment distance, the
   number of one-to-one ratio-test keypoint matches before RANSAC, and the highest phase-correlation peak.

For each test and threshold it reports the share of all candidates the test would reject and how many pairs it
would wrongly reject: pairs the current verifier accepts, and true pairs of the benchmark's truth among the
candidates (whether or not the verifier finds them). With each test's cost, the time of the full verification on
the pairs it rejects gives the projected saving. Writes `bench/results/cascade.md` and `cascade.json`; the
per-pair measurements are kept under `--work` (`<benchmark>/pairs.parquet`) and reused unless `--fresh`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import pickle
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

import tasks.verify as _verify_module
from bench.dataset import DEFAULT_RSSCN7, SPLITS, BenchConfig, build_dataset, load_overlaps, load_truth
from bench.run_quality import machine
from tasks.config import VerificationConfig, load_config
from tasks.hamming import two_nearest
from tasks.imagestats import PART_SIGNATURES, SIGNATURE, STRUCTURE, dihedral_variants, eight_bit
from tasks.ingest import find_files, ingest
from tasks.placement import predicted_overlaps
from tasks.schema import Col
from tasks.similarity import PAIR_A, PAIR_B, SIMILARITY, compute_similarity
from tasks.verify import (
    A_TO_B,
    COLOUR_SIMILARITY,
    EVIDENCE,
    NO_MATCH,
    ImageFeatures,
    Verification,
    extract_features,
    select_candidates,
    verify_pairs,
)

# Everything this analysis takes from verification is the `tasks.verify` imports above and this block: `tasks/verify.py`
# is becoming a package of named stages, and only these lines should need to follow it. The private stages are read to
# time them one by one.
_match_keypoints = _verify_module._match_keypoints
_correlate = _verify_module._correlate
_refined = _verify_module._refined
_one_to_one_matches = _verify_module._one_to_one_matches
_packed_cross_power = _verify_module._packed_cross_power
_load_working_gray = _verify_module._load_working_gray
_views = _verify_module._views
_COSINES, _SINES = _verify_module._COSINES, _verify_module._SINES
FINE_KEYPOINTS = "fine_keypoints"


class _SearchClock:
    """Wraps verification's shift search (`_search_placements`) to add up the time spent in it."""

    def __init__(self) -> None:
        self.original = _verify_module._search_placements
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        start = time.thread_time()
        try:
            return self.original(*args, **kwargs)
        finally:
            self.seconds += time.thread_time() - start

    def __enter__(self) -> _SearchClock:
        _verify_module._search_placements = self
        return self

    def __exit__(self, *exc) -> None:
        _verify_module._search_placements = self.original


REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORK = Path("/tmp/curate-cascade")
DEFAULT_RESULTS = REPO / "bench" / "results"
BENCHMARKS = ("quality", "robustness", "tiling-25", "tiling-50", "generated")
GENERATED_TILES = 3000  # `bench/scale.py`'s generated tiles: distinct noise scenes, every candidate a negative

# --- per-image signatures -----------------------------------------------------------------------------------------

HASH_SIDE, HASH_FREQUENCIES = 64, 16
VARIANTS = 8
# How each of the eight variants is written (the order of `dihedral_blocks`): transposed or not, then flipped
# top-bottom, then left-right.
VARIANT_NAMES = ("same", "hflip", "vflip", "rotate180", "transpose", "rotate90", "rotate270", "transverse")


def dihedral_blocks(block: np.ndarray) -> np.ndarray:
    """The DCT blocks (frequencies 1..n on each axis) of the image's eight flips and quarter turns, from its own:
    a left-right flip negates the odd horizontal frequencies (as counted from 0), a top-bottom flip the odd vertical
    ones, a transpose transposes the block. 8 x n x n, the image itself first."""
    n = block.shape[0]
    odd = np.where(np.arange(1, n + 1) % 2 == 1, -1.0, 1.0).astype(np.float32)
    out = []
    for grid in (block, block.T):
        for rows in (np.ones(n, np.float32), odd):
            for columns in (np.ones(n, np.float32), odd):
                out.append(grid * rows[:, None] * columns[None, :])
    return np.stack(out)


def image_signatures(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """From an RGB image (H x W x 3 uint8): the PDQ-style hash bits of each of its eight variants (8 x 256 bool),
    the DCT block as a unit vector for each variant (8 x 256 float32), and colour moments (mean and standard
    deviation of R, G, B over 255)."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    block = cv2.dct(small)[1 : HASH_FREQUENCIES + 1, 1 : HASH_FREQUENCIES + 1]
    blocks = dihedral_blocks(block).reshape(VARIANTS, -1)
    bits = blocks > np.median(blocks, axis=1, keepdims=True)
    norms = np.maximum(np.linalg.norm(blocks, axis=1, keepdims=True), 1e-9)
    mean, deviation = cv2.meanStdDev(pixels)
    return {"bits": bits, "unit": (blocks / norms).astype(np.float32),
            "moments": np.concatenate([mean.ravel(), deviation.ravel()]).astype(np.float32) / 255.0}


def decoded(path: str) -> np.ndarray | None:
    try:
        with Image.open(path) as image:
            return np.asarray(eight_bit(image).convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


# --- per-pair tests -------------------------------------------------------------------------------------------------

def match_counts(a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig) -> tuple[int, int]:
    """One-to-one ratio-test matches from a's keypoints to b's, and from a's mirrored ones (what `_fit` counts
    before RANSAC, and stops at below `min_inliers`)."""
    counts = []
    for descriptors in (a.descriptors, a.mirror_descriptors):
        if len(descriptors) < 1 or len(b.descriptors) < 2:
            counts.append(0)
            continue
        distances, neighbours = two_nearest(descriptors, b.descriptors)
        counts.append(len(_one_to_one_matches(distances, neighbours, settings.ratio_test, len(b.descriptors))))
    return counts[0], counts[1]


def highest_peak(a: ImageFeatures, b: ImageFeatures) -> float:
    """The highest phase-correlation peak (share of the surface's sum) over the correlation stage's hypotheses: b
    over a at the same scale, and each zoom either way; 0 when an image is too small to correlate."""
    if not len(a.phases) or not len(b.phases):
        return 0.0
    hypotheses = [(a.phases[0], b.phases[0])]
    for level in range(1, len(a.phases)):
        hypotheses += [(a.phases[0], b.phases[level]), (b.phases[0], a.phases[level])]
    peak = 0.0
    for fixed, moving in hypotheses:
        surface = cv2.idft(_packed_cross_power(fixed, moving, _COSINES, _SINES),
                           flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
        peak = max(peak, float(surface.max()))
    return peak


def structure_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two structure signatures (int8), b in whichever flip or quarter turn fits best."""
    return float((dihedral_variants(b[None]).astype(np.float32) @ a.astype(np.float32)).max() / 127.0**2)


def part_similarity(parts_a: np.ndarray, signature_a: np.ndarray, parts_b: np.ndarray, signature_b: np.ndarray
                    ) -> float:
    """The best cosine between either image's whole colour signature and a part signature of the other."""
    width = len(signature_a)
    return float(max((parts_a.reshape(-1, width) @ signature_b).max(), (parts_b.reshape(-1, width) @ signature_a).max())
                 / 255.0)


def _timed(function: Callable, *args) -> tuple[object, float]:
    """`function(*args)` and the CPU seconds this thread spent in it: wall time would count the other programs on a
    shared machine. (OpenCV's own threads are off: see `main`.)"""
    start = time.thread_time()
    result = function(*args)
    return result, time.thread_time() - start


@dataclasses.dataclass
class Stages:
    """The current verifier on one pair, stage by stage, with each stage's seconds."""

    verdict: Verification
    keypoints: float = 0.0
    correlation: float = 0.0
    search: float = 0.0
    refine: float = 0.0
    refined: bool = False
    keypoint_inliers: int = 0
    correlation_peak: float = float("nan")


def verify_by_stage(a: ImageFeatures, b: ImageFeatures, settings: VerificationConfig,
                    fine: Callable[[str], ImageFeatures | None], clock: _SearchClock) -> Stages:
    """`verify_pairs`' verdict for one pair (`_verify`, then the finer pass for a pair worth it), timed per stage.
    The finer pass's time leaves out extracting the finer features (per image, counted apart)."""
    keypoints, seconds = _timed(_match_keypoints, a, b, settings)
    stages = Stages(verdict=keypoints, keypoints=seconds, keypoint_inliers=keypoints.inliers)
    if keypoints.accepted:
        return stages
    searched = clock.seconds
    (correlated, peak), seconds = _timed(_correlate, a, b, settings)
    stages.correlation, stages.search, stages.correlation_peak = seconds, clock.seconds - searched, peak
    if correlated.accepted:
        stages.verdict = correlated
        return stages
    worth = keypoints.inliers >= settings.refine_min_inliers or peak >= settings.refine_min_peak
    if not worth or (a.enlarged and b.enlarged):
        return stages
    fine_settings = _refined(settings)
    fine_a, fine_b = fine(a.path), fine(b.path)
    stages.refined = True
    if fine_a is None or fine_b is None:
        stages.verdict = NO_MATCH
        return stages
    refined, stages.refine = _timed(_match_keypoints, fine_a, fine_b, fine_settings, True)
    if refined.accepted:
        stages.verdict = dataclasses.replace(refined, evidence=FINE_KEYPOINTS)
    return stages


# --- benchmarks -------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Benchmark:
    """A benchmark's split folders and its truth: unordered pairs of real paths that must be related."""

    name: str
    splits: dict[str, Path]
    truth: set[frozenset[str]]
    truth_note: str


def quality_benchmark(rsscn7: Path, work: Path) -> Benchmark:
    truth = load_truth(build_dataset(rsscn7, work / "quality", BenchConfig()))
    pairs = [(os.path.realpath(a), os.path.realpath(b)) for a, b in zip(truth.pairs["a"], truth.pairs["b"])]
    return Benchmark("quality", {s: truth.dataset / s for s in SPLITS}, {frozenset(pair) for pair in pairs},
                     "the injected copies and the listed natural overlaps (`truth.pairs`; not their closure: a pair "
                     "composed through a third file need not be verified itself)")


def robustness_benchmark(rsscn7: Path, work: Path) -> Benchmark:
    from bench.robustness import build

    truth = load_truth(build_dataset(rsscn7, work / "quality", BenchConfig()))
    root = work / "robustness" / "dataset"
    added = build(truth.files, truth.pairs, truth.dataset, root, 12)
    pairs = [(os.path.realpath(a), os.path.realpath(b)) for a, b in
             zip([*truth.pairs["a"], *added["a"]], [*truth.pairs["b"], *added["b"]])]
    return Benchmark("robustness", {s: root / s for s in SPLITS}, {frozenset(pair) for pair in pairs},
                     "the quality truth's pairs and the 12 copies of each of the robustness transforms")


def tiling_benchmark(rsscn7: Path, work: Path, name: str) -> Benchmark:
    """One tiling of `bench/tiling.py` (``25`` or ``50`` % overlap), every tile in train, as its benchmark runs
    it; truth: the pairs of intersecting tiles that are detectable."""
    from bench.tiling import DEFAULT_SCENES, DEFAULT_SEED, TILINGS, build_tiled_dataset, draw_scenes, truth_pairs

    overlaps = load_overlaps()
    scenes = draw_scenes(rsscn7, DEFAULT_SCENES, DEFAULT_SEED, set(overlaps["a"]) | set(overlaps["b"]))
    (tiling,) = (t for t in TILINGS if t.name == name)
    root = work / f"tiling-{name}" / "dataset"
    pairs = truth_pairs(build_tiled_dataset(rsscn7, scenes, tiling, {}, root))
    detectable = pairs[pairs["detectable"]]
    return Benchmark(f"tiling-{name}", {"train": root / "train"},
                     {frozenset((a, b)) for a, b in zip(detectable["a"], detectable["b"])},
                     f"intersecting tiles of {tiling.label}, detectable (`bench.tiling_score.detectable`)")


def generated_benchmark(work: Path, count: int = GENERATED_TILES) -> Benchmark:
    """The speed benchmark's generated tiles (`bench.scale.make_tile`, 128 px, distinct seeds), laid out as
    `bench.scale.dataset` lays them out; no two share ground, so the truth is empty."""
    from bench.scale import dataset, tile_pool

    splits = dataset(work / "generated" / "dataset", tile_pool(work / "generated" / "pool", count))
    return Benchmark("generated", splits, set(), f"none: {count} generated tiles of distinct seeds share no ground")


def benchmark(name: str, rsscn7: Path, work: Path) -> Benchmark:
    if name == "generated":
        return generated_benchmark(work)
    if name == "quality":
        return quality_benchmark(rsscn7, work)
    if name == "robustness":
        return robustness_benchmark(rsscn7, work)
    return tiling_benchmark(rsscn7, work, name.removeprefix("tiling-"))


# --- measurement ------------------------------------------------------------------------------------------------------

def candidates_of(bench: Benchmark, work: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, float]:
    """The flow's ingest frame, similarity pairs and first-round candidates for a benchmark (no cache), and the
    seconds `select_candidates` took."""
    config = load_config()
    files = ingest(find_files(bench.splits, config.extensions))
    similarity = compute_similarity(files, config.similarity, work / "similarity")
    candidates, seconds = _timed(select_candidates, files, similarity.pairs, config.verification)
    return files, similarity.pairs, candidates, seconds


def measure_images(paths: list[str], settings: VerificationConfig) -> tuple[pd.DataFrame, dict, dict]:
    """Per image: verification's features and signatures from the decoded pixels, each timed; returns the table
    of seconds and the two by path."""
    features, signatures, rows = {}, {}, []
    for path in paths:
        features[path], t_features = _timed(extract_features, path, settings)
        _, t_decode_grey = _timed(_load_working_gray, path, settings.max_side)
        pixels, t_decode = _timed(decoded, path)
        signatures[path], t_signature = _timed(image_signatures, pixels) if pixels is not None else (None, 0.0)
        rows.append({"path": path, "t_features": t_features, "t_features_decode": t_decode_grey,
                     "t_decode_rgb": t_decode, "t_signatures": t_signature})
    return pd.DataFrame(rows), features, signatures


def pair_tests(fa: ImageFeatures, fb: ImageFeatures, sa: dict, sb: dict, ia: pd.Series, ib: pd.Series,
               settings: VerificationConfig) -> dict:
    """Every cheap test on one pair, with its seconds (`t_<test>`)."""
    out = {}
    (direct, mirrored), out["t_matches"] = _timed(match_counts, fa, fb, settings)
    out["matches_direct"], out["matches_mirrored"] = direct, mirrored
    out["matches"] = max(direct, mirrored)
    out["peak"], out["t_peak"] = _timed(highest_peak, fa, fb)
    out["structure"], out["t_structure"] = _timed(structure_similarity, ia[STRUCTURE], ib[STRUCTURE])
    out["part"], out["t_part"] = _timed(part_similarity, ia[PART_SIGNATURES], ia[SIGNATURE], ib[PART_SIGNATURES],
                                        ib[SIGNATURE])
    start = time.thread_time()
    distances = np.count_nonzero(sa["bits"][0][None, :] != sb["bits"], axis=1)
    out["t_hash"] = time.thread_time() - start
    out["hash_distance"], out["hash_variant"] = int(distances.min()), VARIANT_NAMES[int(distances.argmin())]
    start = time.thread_time()
    out["hash_cosine"] = float((sb["unit"] @ sa["unit"][0]).max())
    out["t_hash_cosine"] = time.thread_time() - start
    start = time.thread_time()
    out["moments_distance"] = float(np.linalg.norm(sa["moments"] - sb["moments"]))
    out["t_moments"] = time.thread_time() - start
    return out


def measure_pairs(pairs: pd.DataFrame, files: pd.DataFrame, features: dict, signatures: dict,
                  settings: VerificationConfig, fine: Callable[[str], ImageFeatures | None], truth: set,
                  round_number: int) -> pd.DataFrame:
    """Stage times, verdicts and cheap tests of each pair (row_a, row_b, similarity, colour_similarity)."""
    by_row = files.set_index(Col.ROW)
    records = []
    with _SearchClock() as clock:
        for row_a, row_b, similarity, colour in zip(pairs[PAIR_A], pairs[PAIR_B], pairs[SIMILARITY],
                                                    pairs[COLOUR_SIMILARITY]):
            ia, ib = by_row.loc[row_a], by_row.loc[row_b]
            path_a, path_b = ia[Col.PATH], ib[Col.PATH]
            record = {"round": round_number, PAIR_A: row_a, PAIR_B: row_b, "path_a": path_a, "path_b": path_b,
                      "true": frozenset((os.path.realpath(path_a), os.path.realpath(path_b))) in truth,
                      "embedding": similarity, "colour": colour}
            fa, fb = features.get(path_a), features.get(path_b)
            if fa is None or fb is None:
                records.append(record | {"accepted": False, "evidence": "", "unreadable": True})
                continue
            stages = verify_by_stage(fa, fb, settings, fine, clock)
            verdict = stages.verdict
            record |= {"accepted": verdict.accepted, "evidence": str(verdict.evidence),
                       "transform": verdict.transform, "share_a": verdict.share_a, "share_b": verdict.share_b,
                       "a_to_b": None if verdict.a_to_b is None else verdict.a_to_b.ravel().tolist(),
                       "t_keypoints": stages.keypoints, "t_correlation": stages.correlation,
                       "t_search": stages.search, "t_refine": stages.refine, "refined": stages.refined,
                       "keypoint_inliers": stages.keypoint_inliers, "correlation_peak": stages.correlation_peak,
                       "unreadable": False}
            record |= pair_tests(fa, fb, signatures[path_a], signatures[path_b], ia, ib, settings)
            records.append(record)
    return pd.DataFrame(records)


def measure_benchmark(bench: Benchmark, work: Path, progress: Callable[[str], None]) -> dict:
    """Everything measured on one benchmark: the pair table, the image table and the totals (kept under
    `work`)."""
    settings = load_config().verification
    files, similarity_pairs, candidates, t_select = candidates_of(bench, work)
    progress(f"{bench.name}: {len(files)} files, {len(candidates)} first-round candidates")
    paths = files.set_index(Col.ROW)[Col.PATH]
    involved = sorted(set(paths[candidates[PAIR_A]]) | set(paths[candidates[PAIR_B]]))
    # Numba's compiled functions load from its cache on first use: once, before anything is timed.
    first = next((p for p in involved if extract_features(p, settings) is not None), None)
    if first is not None:
        warm = extract_features(first, settings)
        verify_by_stage(warm, warm, settings, lambda path: extract_features(path, _refined(settings)), _SearchClock())
        highest_peak(warm, warm), match_counts(warm, warm, settings)
    images, features, signatures = measure_images(involved, settings)
    fine_features: dict[str, ImageFeatures | None] = {}
    fine_seconds: dict[str, float] = {}
    fine_settings = _refined(settings)

    def fine(path: str) -> ImageFeatures | None:
        if path not in fine_features:
            fine_features[path], fine_seconds[path] = _timed(extract_features, path, fine_settings)
        return fine_features[path]

    first_round = measure_pairs(candidates, files, features, signatures, settings, fine, bench.truth, 1)
    progress(f"{bench.name}: first round measured, {int(first_round['accepted'].sum())} accepted")
    accepted = first_round[first_round["accepted"]]
    matched = pd.DataFrame({PAIR_A: accepted[PAIR_A].to_numpy(), PAIR_B: accepted[PAIR_B].to_numpy(),
                            A_TO_B: [np.asarray(m, np.float64) for m in accepted["a_to_b"]]})
    placed = predicted_overlaps(matched, settings.overlap_min_coverage)
    placed = placed.merge(candidates[[PAIR_A, PAIR_B]], on=[PAIR_A, PAIR_B], how="left", indicator=True)
    placed = placed.loc[(placed.pop("_merge") == "left_only").to_numpy(), [PAIR_A, PAIR_B]]
    placed = placed.merge(similarity_pairs[[PAIR_A, PAIR_B, SIMILARITY]], on=[PAIR_A, PAIR_B], how="left")
    placed[COLOUR_SIMILARITY] = np.nan
    more_paths = sorted((set(paths[placed[PAIR_A]]) | set(paths[placed[PAIR_B]])) - set(involved))
    more_images, more_features, more_signatures = measure_images(more_paths, settings)
    features |= more_features
    signatures |= more_signatures
    second_round = measure_pairs(placed, files, features, signatures, settings, fine, bench.truth, 2)
    pairs = pd.concat([first_round, second_round], ignore_index=True)
    images = pd.concat([images, more_images], ignore_index=True)
    images["t_fine_features"] = images["path"].map(fine_seconds).fillna(0.0)
    images["fine"] = images["path"].isin(fine_seconds)

    # The check: verification itself, on two threads as the flow runs it, must give the same verdicts.
    both = pd.concat([candidates, placed], ignore_index=True)
    both = both.assign(path_a=paths[both[PAIR_A]].to_numpy(), path_b=paths[both[PAIR_B]].to_numpy())
    start, cpu = time.perf_counter(), time.process_time()
    verified = verify_pairs(both, settings)
    t_verify_pairs, cpu_verify_pairs = time.perf_counter() - start, time.process_time() - cpu
    production = {(a, b) for a, b, e in zip(verified[PAIR_A], verified[PAIR_B], verified[EVIDENCE]) if e}
    reproduced = {(a, b) for a, b, e in zip(pairs[PAIR_A], pairs[PAIR_B], pairs["accepted"]) if e}
    totals = {"files": len(files), "candidates": len(candidates), "second_round": len(placed),
              "t_select_candidates": t_select, "t_verify_pairs_two_threads": t_verify_pairs,
              "cpu_verify_pairs_two_threads": cpu_verify_pairs,
              "verify_pairs_accepted": len(production), "reproduced_accepted": len(reproduced),
              "disagreements": sorted(map(list, production ^ reproduced)),
              "true_pairs": len(bench.truth), "truth_note": bench.truth_note}
    progress(f"{bench.name}: {len(pairs)} pairs; verify_pairs accepts {len(production)}, this analysis "
             f"{len(reproduced)} ({len(production ^ reproduced)} differ)")
    return {"pairs": pairs, "images": images, "totals": totals}


def load_or_measure(name: str, rsscn7: Path, work: Path, fresh: bool, progress: Callable[[str], None]) -> dict:
    store = work / name / "measured.pkl"
    if store.exists() and not fresh:
        return pickle.loads(store.read_bytes())
    measured = measure_benchmark(benchmark(name, rsscn7, work), work / name, progress)
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_bytes(pickle.dumps(measured))
    return measured


# --- analysis ---------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Test:
    """A cheap test: a score per pair (higher = more alike), what it costs per pair, and per image beyond what the
    flow computes anyway (`per_image`: a column of the image table, for a signature from the decoded pixels that
    ingest would compute)."""

    name: str
    score: Callable[[pd.DataFrame], pd.Series]
    cost: str | None  # a column of per-pair seconds; None: already on the candidate row
    per_image: str | None
    needs_features: bool
    description: str


TESTS = (
    Test("embedding", lambda p: p["embedding"], None, None, False,
         "embedding cosine on the candidate row (missing for pairs proposed by other lists: never rejected)"),
    Test("colour", lambda p: p["colour"], None, None, False, "colour-signature cosine on the candidate row"),
    Test("structure", lambda p: p["structure"], "t_structure", None, False,
         "structure signature (ingest's 8 x 8 DCT), best of the eight flips and turns"),
    Test("part", lambda p: p["part"], "t_part", None, False,
         "best cosine of either image's colour signature with a part signature of the other (ingest's)"),
    Test("hash", lambda p: -p["hash_distance"], "t_hash", "t_signatures", False,
         "minus the Hamming distance of PDQ-style 256-bit hashes, least over the eight variants"),
    Test("hash_cosine", lambda p: p["hash_cosine"], "t_hash_cosine", "t_signatures", False,
         "cosine of the 16 x 16 DCT blocks behind the hash, best of the eight variants"),
    Test("moments", lambda p: -p["moments_distance"], "t_moments", "t_signatures", False,
         "minus the distance of colour moments (mean and deviation of R, G, B)"),
    Test("matches", lambda p: p["matches"], "t_matches", None, True,
         "one-to-one ratio-test keypoint matches before RANSAC, direct or mirrored (the larger)"),
    Test("peak", lambda p: p["peak"], "t_peak", None, True,
         "highest phase-correlation peak over the correlation stage's hypotheses"),
    Test("inliers", lambda p: p["keypoint_inliers"], None, None, True,
         "the keypoint stage's inliers (known once that stage has run)"),
)
TEST_BY_NAME = {test.name: test for test in TESTS}
CORRELATION_EVIDENCE = {"phase_correlation", "shift_search", "median_cell"}


@dataclasses.dataclass(frozen=True)
class Gate:
    """A point in the cascade where a test could stop a pair: the pairs that reach it, the ones it must never stop
    (their verdict would change) and what stopping a pair saves (per-pair seconds)."""

    name: str
    reaches: Callable[[pd.DataFrame], pd.Series]
    must_pass: Callable[[pd.DataFrame], pd.Series]
    saves: tuple[str, ...]
    tests: tuple[str, ...]  # the tests that make sense here (free ones where a stage before computed them)
    free: tuple[str, ...]  # tests whose score an earlier stage already computed
    description: str
    rejects: bool = True  # a stopped pair is rejected there; False: only the stage is skipped, the rest runs


GATES = (
    Gate("before verification", lambda p: pd.Series(True, index=p.index), lambda p: p["accepted"] | p["true"],
         ("t_keypoints", "t_correlation", "t_refine"),
         ("embedding", "colour", "structure", "part", "hash", "hash_cosine", "moments", "matches", "peak"), (),
         "reject a candidate outright: never an accepted pair, nor a true pair of the benchmark"),
    Gate("before correlation", lambda p: p["evidence"] != "keypoints",
         lambda p: p["evidence"].isin(CORRELATION_EVIDENCE | {FINE_KEYPOINTS}),
         ("t_correlation", "t_refine"),
         ("embedding", "colour", "structure", "part", "hash", "hash_cosine", "moments", "matches", "inliers"),
         ("matches", "inliers"),
         "stop a pair the keypoints rejected: never one that correlation or the finer pass accepts"),
    Gate("before the shift search", lambda p: p["t_search"] > 0, lambda p: p["evidence"] == "shift_search",
         ("t_search",),
         ("embedding", "colour", "structure", "part", "hash", "hash_cosine", "moments", "matches", "inliers", "peak"),
         ("matches", "inliers", "peak"),
         "skip the search of every shift for a pair phase correlation did not place: never one the search accepts",
         rejects=False),
    Gate("before the finer pass", lambda p: p["refined"], lambda p: p["evidence"] == FINE_KEYPOINTS,
         ("t_refine",),
         ("embedding", "colour", "structure", "part", "hash", "hash_cosine", "moments", "matches", "inliers", "peak"),
         ("matches", "inliers", "peak"),
         "skip the finer keypoint pass (and the finer features it extracts): never a pair it accepts"),
)


def _all_pairs(measured: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    pairs = pd.concat([m["pairs"].assign(benchmark=name) for name, m in measured.items()], ignore_index=True)
    pairs = pairs[~pairs["unreadable"]].reset_index(drop=True)
    images = pd.concat([m["images"].assign(benchmark=name) for name, m in measured.items()], ignore_index=True)
    return pairs, images


def lossless_threshold(scores: pd.Series, must_pass: pd.Series) -> float:
    """The highest threshold that stops no pair of `must_pass` (stop: score below it; a missing score passes)."""
    kept = scores[must_pass].dropna()
    return float(kept.min()) if len(kept) else float("inf")


def images_freed(pairs: pd.DataFrame, stopped: pd.Series, images: pd.DataFrame, column: str,
                 touched: pd.Series | None = None) -> float:
    """Seconds of `column` (per image) no longer spent: images whose every pair (among `touched`, default all) is
    stopped."""
    touched = pd.Series(True, index=pairs.index) if touched is None else touched
    live = pairs[touched & ~stopped]
    needed = set(live["path_a"]) | set(live["path_b"])
    used = set(pairs.loc[touched, "path_a"]) | set(pairs.loc[touched, "path_b"])
    freed = images["path"].isin(used - needed)
    return float(images.loc[freed, column].sum())


def evaluate(pairs: pd.DataFrame, images: pd.DataFrame, gate: Gate, test: Test, threshold: float) -> dict:
    """What `test` stopping pairs below `threshold` at `gate` does, per benchmark and over all: pairs reaching the
    gate, stopped (share), wrongly stopped (pairs that must pass; accepted ones; true ones), the seconds saved and
    the test's cost (single thread)."""
    out = {}
    for name, group in [*pairs.groupby("benchmark", sort=False), ("all", pairs)]:
        reach = gate.reaches(group)
        scores = test.score(group)
        stopped = reach & (scores < threshold)
        must = gate.must_pass(group)
        saved = float(group.loc[stopped, list(gate.saves)].to_numpy().sum())
        bench_images = images if name == "all" else images[images["benchmark"] == name]
        if gate.name == "before verification" and not test.needs_features:
            saved += images_freed(group, stopped, bench_images, "t_features")
        if "t_refine" in gate.saves:
            saved += images_freed(group, stopped, bench_images, "t_fine_features", group["refined"])
        free = test.name in gate.free or test.cost is None
        cost = 0.0 if free else float(group.loc[reach, test.cost].sum())
        if test.per_image and not free:
            cost += float(bench_images[test.per_image].sum())
        out[name] = {"reach": int(reach.sum()), "stopped": int(stopped.sum()),
                     "share": float(stopped.sum() / max(1, reach.sum())),
                     "wrong": int((stopped & must).sum()), "wrong_accepted": int((stopped & group["accepted"]).sum()),
                     "wrong_true": int((stopped & group["true"]).sum()),
                     "saved_seconds": saved, "cost_seconds": cost}
    return out


def analyse(measured: dict[str, dict]) -> dict:
    """Every gate and test: the lossless threshold over all benchmarks and what it does; the same threshold chosen
    on the quality and robustness benchmarks alone, checked on the tiled scenes; the best lossless rule of two
    tests at each gate."""
    pairs, images = _all_pairs(measured)
    chosen_on = pairs["benchmark"].isin(["quality", "robustness"])
    rows = []
    for gate in GATES:
        for name in gate.tests:
            test = TEST_BY_NAME[name]
            reach = gate.reaches(pairs)
            threshold = lossless_threshold(test.score(pairs)[reach], gate.must_pass(pairs)[reach])
            held_out = lossless_threshold(test.score(pairs)[reach & chosen_on],
                                          gate.must_pass(pairs)[reach & chosen_on])
            cost_per_pair = 0.0 if name in gate.free or test.cost is None else float(pairs.loc[reach, test.cost].mean())
            rows.append({"gate": gate.name, "test": name, "threshold": threshold, "cost_us": cost_per_pair * 1e6,
                         "lossless": evaluate(pairs, images, gate, test, threshold),
                         "threshold_quality_robustness": held_out,
                         "held_out": evaluate(pairs, images, gate, test, held_out)})
    return {"tests": rows, "rules": [best_rule(pairs, images, gate) for gate in GATES]}


def best_rule(pairs: pd.DataFrame, images: pd.DataFrame, gate: Gate, steps: int = 40) -> dict:
    """The rule 'stop when X < x and Y < y' over two of the gate's tests that stops the most pairs (over all
    benchmarks) while stopping none that must pass; x runs over `steps` quantiles of X, y is then the highest
    lossless one."""
    reach = gate.reaches(pairs)
    group = pairs[reach]
    must = gate.must_pass(group)
    best = {"stopped": -1}
    names = list(gate.tests)
    for i, first in enumerate(names):
        x_scores = TEST_BY_NAME[first].score(group)
        for second in names[i + 1 :]:
            y_scores = TEST_BY_NAME[second].score(group)
            for x in np.unique(np.nanquantile(x_scores.dropna(), np.linspace(0.02, 1.0, steps))):
                below = x_scores < x
                y = lossless_threshold(y_scores[below], must[below])
                stopped = int((below & (y_scores < y)).sum())
                if stopped > best["stopped"]:
                    best = {"stopped": stopped, "tests": (first, second), "thresholds": (float(x), float(y))}
    if best["stopped"] <= 0:
        return {"gate": gate.name, "stopped": 0}

    first, second = (TEST_BY_NAME[t] for t in best["tests"])
    x, y = best["thresholds"]
    both = Test(f"{first.name} and {second.name}",
                lambda p: pd.Series(np.where((first.score(p) < x) & (second.score(p) < y), -1.0, 1.0), index=p.index),
                None, None, first.needs_features or second.needs_features, "")
    costs = [t for t in (first, second) if t.name not in gate.free and t.cost is not None]
    result = evaluate(pairs, images, gate, both, 0.0)
    for name, entry in result.items():
        group = pairs if name == "all" else pairs[pairs["benchmark"] == name]
        bench_images = images if name == "all" else images[images["benchmark"] == name]
        entry["cost_seconds"] = float(sum(group.loc[gate.reaches(group), t.cost].sum() for t in costs)) + float(
            sum(bench_images[t.per_image].sum() for t in {t.per_image: t for t in costs if t.per_image}.values()))
    return {"gate": gate.name, "tests": best["tests"], "thresholds": best["thresholds"], "result": result}


# The cascade this analysis recommends: at each gate, a pair stops when any of its tests scores below its threshold.
# Each test alone stops no pair that must pass at its gate on any benchmark, so neither does their union; each
# threshold lies a step inside the lossless one, for a margin. How many pairs must pass at each gate, i.e. how much
# evidence stands behind it, is in the report: few for the finer pass.
RECOMMENDED = (
    ("before correlation", (("part", 0.60), ("colour", 0.45))),
    ("before the shift search", (("peak", 0.033), ("part", 0.70), ("colour", 0.60))),
    ("before the finer pass", (("matches", 9.0), ("colour", 0.80), ("part", 0.84))),
)


def rule_text(rules) -> str:
    return " or ".join(f"{test} < {threshold:g}" for test, threshold in rules)


def project(pairs: pd.DataFrame, images: pd.DataFrame, cascade=RECOMMENDED) -> dict:
    """The gates of `cascade` applied together, per benchmark: pairs stopped at each, pairs wrongly stopped (0
    is the requirement) and the single-thread seconds of verification before and after (features, stages, the
    finer pass and its features, plus the tests' own cost)."""
    gates = {gate.name: gate for gate in GATES}
    out = {}
    for name, group in [*pairs.groupby("benchmark", sort=False), ("all", pairs)]:
        bench_images = images if name == "all" else images[images["benchmark"] == name]
        stopped = pd.Series(False, index=group.index)
        entry: dict = {"gates": {}}
        saved = cost = 0.0
        signatures_needed = False
        for gate_name, rules in cascade:
            gate = gates[gate_name]
            reach = gate.reaches(group) & ~stopped
            here = pd.Series(False, index=group.index)
            for test_name, threshold in rules:
                test = TEST_BY_NAME[test_name]
                here |= reach & (test.score(group) < threshold)
                if test_name not in gate.free and test.cost is not None:
                    cost += float(group.loc[reach, test.cost].sum())
                signatures_needed |= test.per_image is not None
            saved += float(group.loc[here, list(gate.saves)].to_numpy().sum())
            entry["gates"][f"{gate_name}: {rule_text(rules)}"] = {
                "reach": int(reach.sum()), "stopped": int(here.sum()), "must_pass": int(gate.must_pass(group)[
                    gate.reaches(group)].sum()), "wrong": int((here & gate.must_pass(group)).sum())}
            if gate.rejects:
                stopped |= here
        if signatures_needed:
            cost += float(bench_images["t_signatures"].sum())
        refined_live = group["refined"] & ~stopped
        needed = set(group.loc[refined_live, "path_a"]) | set(group.loc[refined_live, "path_b"])
        fine_images = bench_images[bench_images["fine"]]
        saved += float(fine_images.loc[~fine_images["path"].isin(needed), "t_fine_features"].sum())
        before = float(group[["t_keypoints", "t_correlation", "t_refine"]].to_numpy().sum()
                       + bench_images[["t_features", "t_fine_features"]].to_numpy().sum())
        entry |= {"pairs": len(group), "wrong": sum(g["wrong"] for g in entry["gates"].values()),
                  "wrong_accepted": int((stopped & group["accepted"]).sum()),
                  "true_stopped": int((stopped & group["true"]).sum()),
                  "true_stopped_found_now": int((stopped & group["true"] & group["accepted"]).sum()),
                  "seconds_before": before, "saved_seconds": saved, "cost_seconds": cost,
                  "seconds_after": before - saved + cost}
        out[name] = entry
    return out


def stage_table(measured: dict[str, dict]) -> list[dict]:
    """Per benchmark: candidates, verdicts by evidence, truth among the candidates, and where verification's
    single-thread seconds go."""
    rows = []
    for name, m in measured.items():
        pairs, images, totals = m["pairs"], m["images"], m["totals"]
        readable = pairs[~pairs["unreadable"]]
        rows.append({
            "benchmark": name, "files": totals["files"], "candidates": totals["candidates"],
            "second_round": totals["second_round"], "accepted": int(pairs["accepted"].sum()),
            "evidence": readable.loc[readable["accepted"], "evidence"].value_counts().to_dict(),
            "true_listed": totals["true_pairs"], "true_candidates": int(pairs["true"].sum()),
            "true_rejected": int((pairs["true"] & ~pairs["accepted"]).sum()),
            "seconds": {"features": float(images["t_features"].sum()),
                        "features_decode": float(images["t_features_decode"].sum()),
                        "keypoints": float(readable["t_keypoints"].sum()),
                        "correlation": float(readable["t_correlation"].sum()),
                        "search": float(readable["t_search"].sum()),
                        "finer_features": float(images["t_fine_features"].sum()),
                        "finer_matching": float(readable["t_refine"].sum()),
                        "rejected_pairs": float(readable.loc[~readable["accepted"], ["t_keypoints", "t_correlation",
                                                                                     "t_refine"]].to_numpy().sum())},
            "refined_pairs": int(readable["refined"].sum()),
            "verify_pairs_wall_two_threads": totals["t_verify_pairs_two_threads"],
            "verify_pairs_cpu_two_threads": totals.get("cpu_verify_pairs_two_threads"),
            "disagreements": len(totals["disagreements"]),
        })
    return rows


def hash_acceptance(pairs: pd.DataFrame, distances=(0, 8, 16, 32, 48, 64)) -> list[dict]:
    """For each Hamming distance: pairs at most that far (least over the eight variants) that the verifier accepts
    and rejects, the keypoint seconds spent accepting them, and how often the variant found names the verifier's
    flip or turn (under the naming of each)."""
    rows = []
    accepted = pairs[pairs["accepted"]]
    # The variant that maps onto each verifier transform (the verifier names turns clockwise, b relative to a).
    same_turn = {"same": {"same", "rescale", "crop", "rescale+crop"}, "hflip": {"hflip"}, "vflip": {"vflip"},
                 "rotate270": {"rotate90"}, "rotate90": {"rotate270"}, "rotate180": {"rotate180"},
                 "transpose": {"hflip+rotate270", "vflip+rotate90"}, "transverse": {"hflip+rotate90",
                                                                                   "vflip+rotate270"}}
    for distance in distances:
        near = pairs["hash_distance"] <= distance
        hits = accepted[accepted["hash_distance"] <= distance]
        agree = sum(t in same_turn.get(v, ()) for v, t in zip(hits["hash_variant"], hits["transform"]))
        rows.append({"distance": distance, "accepted": len(hits), "rejected": int((near & ~pairs["accepted"]).sum()),
                     "keypoint_seconds": float(hits["t_keypoints"].sum()), "variant_agrees": int(agree)})
    return rows


def _s(seconds: float) -> str:
    return f"{seconds:.2f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def report(results: dict) -> str:
    """The Markdown report of `results` (what `main` writes to cascade.json)."""
    names = [row["benchmark"] for row in results["stages"]]
    parts = ["# Verification cascade analysis (issue 24)",
             f"Command: `{results['command']}`  \nDate: {results['date']}  \n"
             + "Machine: {cpu}, {cores} cores, {ram_gib} GiB RAM, Python {python}".format(**results["machine"]),
             "Every time is CPU seconds of one thread (`time.thread_time`, OpenCV's own threads off), so other "
             "programs "
             "on a shared machine hardly move them. The robustness benchmark holds the quality benchmark's files too, "
             "so the column `all` counts those pairs twice. Truth per benchmark: "
             + "; ".join(f"{row['benchmark']}: {row['truth_note']}" for row in results["stages"]) + "."]
    stage_rows = []
    for row in results["stages"]:
        sec = row["seconds"]
        total = sec["features"] + sec["keypoints"] + sec["correlation"] + sec["finer_features"] + sec["finer_matching"]
        evidence = ", ".join(f"{k} {v}" for k, v in sorted(row["evidence"].items(), key=lambda kv: -kv[1]))
        stage_rows.append([row["benchmark"], row["files"], f"{row['candidates']} + {row['second_round']}",
                           f"{row['accepted']} ({evidence})", f"{row['true_candidates']} / {row['true_listed']}",
                           row["true_rejected"], f"{_s(sec['features'])} ({_s(sec['features_decode'])})",
                           _s(sec["keypoints"]), f"{_s(sec['correlation'])} ({_s(sec['search'])})",
                           f"{_s(sec['finer_features'])} + {_s(sec['finer_matching'])} ({row['refined_pairs']} pairs)",
                           _s(total), f"{_s(sec['rejected_pairs'])} ({sec['rejected_pairs'] / total:.0%})",
                           f"{row['verify_pairs_wall_two_threads']:.1f} / {row['verify_pairs_cpu_two_threads']:.1f}",
                           row["disagreements"]])
    parts.append("## Where verification's time goes\n\n" + _table(
        ["benchmark", "files", "candidates (+ second round)", "accepted (by evidence)", "true pairs among candidates / "
         "listed", "true candidates rejected", "features s (decode)", "keypoints s", "correlation s (shift search)",
         "finer pass s: features + matching", "total s", "spent on pairs rejected in the end (share)",
         "`verify_pairs`, 2 threads: wall / CPU s", "verdicts differing from `verify_pairs`"], stage_rows))
    test_rows = []
    for row in results["tests"]:
        lossless, held = row["lossless"], row["held_out"]
        tiling_wrong = sum(held[n]["wrong"] for n in names if n.startswith("tiling"))
        all_ = lossless["all"]
        test_rows.append([row["gate"], row["test"], f"{row['threshold']:.4g}",
                          *(f"{lossless[n]['share']:.1%}" for n in names), f"{all_['share']:.1%}",
                          f"{row['cost_us']:.0f}", _s(all_["saved_seconds"]), _s(all_["cost_seconds"]),
                          f"{row['threshold_quality_robustness']:.4g}: {tiling_wrong}"])
    parts.append(
        "## Each test at each gate\n\n"
        "A gate stops a pair whose score is below the threshold. **Lossless threshold**: the highest that stops no "
        "pair that must pass at that gate on any benchmark (before verification: no accepted pair and no true "
        "pair; at a later gate: no pair that the stages from there on accept), so every miss count at it is 0. "
        "Stopped: share of the pairs that reach the gate. Saved: single-thread seconds of the stages the stopped "
        "pairs skip (before verification also the features of images all of whose pairs stop; at the finer pass "
        "also its features), summed over all benchmarks; cost: the test's own seconds (0 where an earlier stage "
        "computed the score, or the score is on the candidate row). Last column: the lossless threshold chosen on "
        "the quality and robustness benchmarks alone, and the pairs it wrongly stops on the tiled scenes.\n\n"
        + "\n".join(f"- `{t['name']}`: {t['description']}" for t in results["test_descriptions"]) + "\n\n"
        + _table(["gate", "test", "lossless threshold", *(f"stopped: {n}" for n in names), "stopped: all",
                  "cost per pair (us)", "saved s", "cost s", "chosen on quality + robustness: wrong on tiles"],
                 test_rows))
    rule_rows = [[rule["gate"], " and ".join(rule["tests"]),
                  ", ".join(f"{t} < {x:.4g}" for t, x in zip(rule["tests"], rule["thresholds"])),
                  f"{rule['result']['all']['share']:.1%}", rule["result"]["all"]["wrong"],
                  _s(rule["result"]["all"]["saved_seconds"]), _s(rule["result"]["all"]["cost_seconds"])]
                 for rule in results["rules"] if rule.get("result")]
    parts.append("## The best lossless rule of two tests at each gate\n\nStop when both scores are below their "
                 "thresholds; over all benchmarks, fitted on them (no held-out check: read as an upper bound).\n\n"
                 + _table(["gate", "tests", "rule", "stopped", "wrong", "saved s", "cost s"], rule_rows))
    hash_rows = [[row["distance"], row["accepted"], row["rejected"], row["variant_agrees"], _s(row["keypoint_seconds"])]
                 for row in results["hash_acceptance"]]
    parts.append("## Accepting clear copies by the PDQ-style hash\n\nPairs whose hashes lie at most this far apart "
                 "(least over the eight flips and turns of one image), all benchmarks: how many the verifier accepts "
                 "and rejects, how many of the accepted ones the best variant names the verifier's flip or turn for, "
                 "and the keypoint seconds spent accepting them (what an aligned check could replace).\n\n"
                 + _table(["Hamming distance at most", "accepted", "rejected", "variant = verifier's transform",
                           "keypoint s"], hash_rows))
    projection = results["projection"]
    gate_names = list(projection["all"]["gates"])
    proj_rows = []
    for name, entry in projection.items():
        proj_rows.append([name, *(f"{g['stopped']} of {g['reach']} ({g['must_pass']} must pass, {g['wrong']} wrong)"
                                  for g in entry["gates"].values()),
                          entry["wrong_accepted"], f"{entry['true_stopped']} ({entry['true_stopped_found_now']})",
                          _s(entry["seconds_before"]),
                          _s(entry["seconds_after"]),
                          f"{1 - entry['seconds_after'] / entry['seconds_before']:.0%}"])
    parts.append("## The recommended cascade, all gates together\n\n"
                 + "At the shift-search gate a stopped pair only skips the search; at the others it is rejected "
                 "there. True pairs stopped: true pairs of the benchmark rejected at a gate (of them, accepted by "
                 "the current verifier: in brackets; those rejected by it anyway lose nothing). Seconds: single "
                 "thread, verification's features and stages, the finer pass's features included, and the tests' "
                 "own cost.\n\n"
                 + _table(["benchmark", *gate_names, "accepted pairs rejected", "true pairs stopped (accepted now)",
                           "verification s before", "after", "saved"], proj_rows))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cascade", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="benchmarks to analyse (repeatable)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="work folder, outside the repository")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where cascade.md/.json go")
    parser.add_argument("--rsscn7", type=Path, default=DEFAULT_RSSCN7, help="RSSCN7 root (<class>/*.jpg)")
    parser.add_argument("--fresh", action="store_true", help="measure again rather than reuse the measurements")
    args = parser.parse_args(argv)
    work = Path(os.path.realpath(args.work))

    def progress(message: str) -> None:
        print(f"[{dt.datetime.now():%H:%M:%S} load {os.getloadavg()[0]:.1f}] {message}", flush=True)

    cv2.setNumThreads(1)  # as verification runs: every stage's work stays on the timed thread
    measured = {name: load_or_measure(name, args.rsscn7.resolve(), work, args.fresh, progress)
                for name in (args.only or BENCHMARKS)}
    pairs, images = _all_pairs(measured)
    stages = stage_table(measured)
    for row, name in zip(stages, measured):
        row["truth_note"] = measured[name]["totals"]["truth_note"]
    results = {
        "command": shlex.join(["python", "-m", "bench.cascade", *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
        "stages": stages, **analyse(measured), "hash_acceptance": hash_acceptance(pairs),
        "recommended": [{"gate": gate, "rules": [list(rule) for rule in rules]} for gate, rules in RECOMMENDED],
        "projection": project(pairs, images),
        "test_descriptions": [{"name": t.name, "description": t.description} for t in TESTS],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "cascade.json").write_text(json.dumps(results, indent=1, default=float))
    (args.results / "cascade.md").write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
