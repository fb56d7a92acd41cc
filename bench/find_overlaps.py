"""Find candidate natural overlaps among the RSSCN7 tiles (the provenance of ``bench/rsscn7_overlaps.csv``).

RSSCN7 tiles were cut from shared Google Earth imagery, so some pairs of original tiles show the same ground,
shifted, or at twice the zoom (each class was sampled at several scales from the same imagery). Nobody injected
them, so the benchmark must know them or it would count Curate's correct findings as false positives.

Candidates come from four searches:

1. shift: phase correlation over *all* unordered pairs at 128 px, which finds pure translations however
   dissimilar the CNN embeddings are;
2. zoom: phase correlation of every tile at half scale (64 px on a 128 px canvas) against every other tile of its
   class at 128 px, which finds a tile that is a 2x zoom into part of another;
3. fastdup's k=10 nearest neighbours with similarity > 0.85;
4. votes of distinctive SIFT descriptors pooled from all tiles in one nearest-neighbour index, which finds the
   small shared strips and corners of neighbouring tiles that the first three miss.

Each candidate is verified at full resolution: SIFT features matched with Lowe's ratio test and a RANSAC
similarity transform (its inlier count, and its scale: 1 for a shift, 2 or 0.5 for a zoom), plus, for pure
shifts, the normalised cross-correlation of the shared region on high-pass images (fine detail only, so smooth
fields and water do not correlate by their gradients). Plausible pairs are drawn as contact sheets, with the second
tile warped onto the first, for a person to confirm by eye; only confirmed pairs go into the CSV, with that
person's note.

Usage: ``.venv/bin/python -m bench.find_overlaps --out /tmp/curate-overlaps`` (about 8 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import scipy.fft

from bench.dataset import DEFAULT_RSSCN7, list_tiles

SMALL = 128  # phase-correlation resolution: 400 px tiles shrink 3.1x, shifts stay well resolved
# Measured here: pure texture lifts 16 % of same-class pairs above 0.06; shared ground gives 0.15-0.6 (shift)
# and 0.19-0.34 (2x zoom), while 300 random parking-lot pairs peaked at 0.09 at most.
SHIFT_PEAK = 0.10
ZOOM_PEAK = 0.10
FASTDUP_CANDIDATE = 0.85
# Measured on the candidates: unrelated tiles gave at most ~10 SIFT inliers at a sane scale and a shift score
# below 0.2; pairs confirmed by eye had 14 to 1,250 inliers, or a shift score above 0.9. Fits of 12-22 inliers on
# uniform fields or water need the eye most.
SIFT_PLAUSIBLE = 12
SHIFT_PLAUSIBLE = 0.5


def _gray(path: Path, size: int | None = None) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    return img if size is None else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _whitened(images: np.ndarray, size: int) -> np.ndarray:
    """Return mean-removed, Hann-windowed, whitened spectra of ``images`` placed top-left on a SMALL canvas."""
    window = np.outer(np.hanning(size), np.hanning(size)).astype(np.float32)
    canvas = np.zeros((len(images), SMALL, SMALL), np.float32)
    canvas[:, :size, :size] = (images - images.mean(axis=(1, 2), keepdims=True)) * window
    spectra = scipy.fft.rfft2(canvas)
    return spectra / (np.abs(spectra) + 1e-6)  # whitened: the inverse of a product is the phase correlation


def _peaks(query: np.ndarray, targets: np.ndarray) -> np.ndarray:
    corr = scipy.fft.irfft2(targets * np.conj(query), s=(SMALL, SMALL), workers=2)
    return corr.reshape(len(targets), -1).max(axis=1)


def shift_candidates(paths: list[Path], block: int = 64) -> pd.DataFrame:
    """Return unordered pairs ``i < j`` whose phase-correlation peak exceeds ``SHIFT_PEAK``."""
    spectra = _whitened(np.stack([_gray(p, SMALL) for p in paths]), SMALL)
    rows = []
    for i in range(len(paths) - 1):
        for start in range(i + 1, len(paths), block):
            peaks = _peaks(spectra[i], spectra[start:start + block])
            rows += [(i, start + k, float(peaks[k])) for k in np.flatnonzero(peaks > SHIFT_PEAK)]
    return pd.DataFrame(rows, columns=["i", "j", "shift_peak"])


def zoom_candidates(paths: list[Path]) -> pd.DataFrame:
    """Return ordered pairs (``i`` wide, ``j`` zoomed in 2x) of one class whose peak exceeds ``ZOOM_PEAK``."""
    wide = _whitened(np.stack([_gray(p, SMALL) for p in paths]), SMALL)
    half = _whitened(np.stack([_gray(p, SMALL // 2) for p in paths]), SMALL // 2)
    classes = np.array([p.parent.name for p in paths])
    rows = []
    for j in range(len(paths)):
        same = np.flatnonzero((classes == classes[j]) & (np.arange(len(paths)) != j))
        peaks = _peaks(half[j], wide[same])
        rows += [(int(same[k]), j, float(peaks[k])) for k in np.flatnonzero(peaks > ZOOM_PEAK)]
    return pd.DataFrame(rows, columns=["i", "j", "zoom_peak"])


def sift_candidates(paths: list[Path], per_tile: int = 400, min_matches: int = 3) -> pd.DataFrame:
    """Return pairs ``i < j`` sharing at least ``min_matches`` distinctive SIFT descriptors, over all pairs.

    All tiles' descriptors go into one approximate nearest-neighbour index; a descriptor votes for the tile of its
    nearest neighbour (from another tile) when that neighbour passes Lowe's ratio test against the next one. This
    finds small overlaps and zooms that the windowed phase correlation and the CNN embeddings both miss.
    """
    sift = cv2.SIFT_create(nfeatures=per_tile)
    descriptors, owners = [], []
    for k, path in enumerate(paths):
        _, found = sift.detectAndCompute(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), None)
        if found is not None:
            descriptors.append(found)
            owners.append(np.full(len(found), k))
    data, owner = np.vstack(descriptors).astype(np.float32), np.concatenate(owners)
    index = cv2.flann_Index(data, {"algorithm": 1, "trees": 4})  # 1 = KD-tree forest
    neighbours, distances = index.knnSearch(data, 6, params={"checks": 32})
    votes = []
    for q in range(len(data)):
        other = [(n, d) for n, d in zip(neighbours[q], distances[q]) if owner[n] != owner[q]]
        if len(other) >= 2 and other[0][1] < 0.64 * other[1][1]:  # squared distances: ratio 0.8
            a, b = owner[q], owner[other[0][0]]
            votes.append((min(a, b), max(a, b)))
    counts = pd.DataFrame(votes, columns=["i", "j"]).value_counts().rename("sift_votes").reset_index()
    return counts[counts["sift_votes"] >= min_matches]


def fastdup_neighbours(paths: list[Path], work_dir: Path) -> pd.DataFrame:
    """Return fastdup's k=10 neighbour pairs ``i < j`` above ``FASTDUP_CANDIDATE``."""
    os.environ.setdefault("SENTRY_OPT_OUT", "1")
    os.environ.setdefault("FASTDUP_PRODUCTION", "1")
    import fastdup  # noqa: PLC0415 - must follow the environment variables above

    shutil.rmtree(work_dir, ignore_errors=True)  # fastdup refuses a file list in a work_dir holding results
    fd = fastdup.create(work_dir=str(work_dir), input_dir=[str(p) for p in paths])
    fd.run(overwrite=True, run_sentry=False, nearest_neighbors_k=10, threshold=FASTDUP_CANDIDATE,
           print_summary=False)
    sim = fd.similarity()
    index = {str(p.resolve()): k for k, p in enumerate(paths)}
    rows = []
    for src, dst, score in zip(sim["filename_from"], sim["filename_to"], sim["distance"]):
        a, b = index[str(Path(src).resolve())], index[str(Path(dst).resolve())]
        rows.append((min(a, b), max(a, b), float(score)))
    return pd.DataFrame(rows, columns=["i", "j", "fastdup"]).groupby(["i", "j"], as_index=False).max()


def _highpass(img: np.ndarray) -> np.ndarray:
    return img - cv2.GaussianBlur(img, (0, 0), 3)


def verify_shift(path_a: Path, path_b: Path) -> float:
    """Return the high-pass correlation of the region two tiles share at their phase-correlation shift.

    Near 1 means the same pixels, shifted; high-pass images keep only fine detail, so smooth fields and water do
    not correlate by their gradients alone.
    """
    a, b = _gray(path_a), _gray(path_b)
    ha, hb = _highpass(a), _highpass(b)  # before phaseCorrelate, which windows its inputs in place
    (dx, dy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F))
    h, w = a.shape
    best = -1.0
    for sx in (round(dx) - 1, round(dx), round(dx) + 1):  # sub-pixel shifts round either way
        for sy in (round(dy) - 1, round(dy), round(dy) + 1):
            # b(x + sx, y + sy) matches a(x, y): crop both to the region they share at that shift.
            x0, y0, x1, y1 = max(0, -sx), max(0, -sy), min(w, w - sx), min(h, h - sy)
            if x1 - x0 < 40 or y1 - y0 < 40:
                continue
            ra, rb = ha[y0:y1, x0:x1], hb[y0 + sy:y1 + sy, x0 + sx:x1 + sx]
            ra, rb = ra - ra.mean(), rb - rb.mean()
            best = max(best, float((ra * rb).sum() / (np.sqrt((ra * ra).sum() * (rb * rb).sum()) + 1e-6)))
    return best


def sift_features(paths: list[Path]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Return each tile's SIFT keypoint positions and descriptors."""
    sift = cv2.SIFT_create(nfeatures=3000)
    out = []
    for path in paths:
        keypoints, descriptors = sift.detectAndCompute(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), None)
        out.append((np.float32([k.pt for k in keypoints]), descriptors))
    return out


def verify_sift(fa: tuple[np.ndarray, np.ndarray | None], fb: tuple[np.ndarray, np.ndarray | None],
                ) -> tuple[int, np.ndarray | None]:
    """Return the RANSAC inliers of a similarity transform a -> b between matched SIFT features, and the transform.

    Unrelated tiles give at most a handful of inliers; shared ground gives tens to hundreds, at scale 1 (shift)
    or 2 / 0.5 (zoom), whatever the lighting.
    """
    (pa, da), (pb, db) = fa, fb
    if da is None or db is None or len(da) < 2 or len(db) < 2:
        return 0, None
    matches = [m for m, n in (p for p in cv2.BFMatcher().knnMatch(da, db, k=2) if len(p) == 2)
               if m.distance < 0.75 * n.distance]  # Lowe's ratio test
    if len(matches) < 6:
        return 0, None
    src = pa[[m.queryIdx for m in matches]]
    dst = pb[[m.trainIdx for m in matches]]
    matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=5.0)
    return (0, None) if matrix is None else (int(mask.sum()), matrix)


def describe(matrix: np.ndarray, size: int = 400) -> tuple[bool, float, str]:
    """Classify a SIFT transform a -> b: whether to swap a and b (so ``a`` is the wider view), shared share, kind.

    The share is the intersection of the two footprints over the smaller one (in the wider tile's frame); kinds are
    ``zoom2x`` (scale 2), ``shifted`` (scale 1, at least half shared) and ``overlap`` (scale 1, less shared).
    """
    scale = float(np.hypot(*matrix[:, 0]))
    swap = scale < 0.75  # a's content appears at half size in b: b is the wider view
    if swap:
        matrix, scale = cv2.invertAffineTransform(matrix), 1 / scale
    inverse = cv2.invertAffineTransform(matrix)  # b's frame -> a's frame
    corners = np.float32([[0, 0], [size, 0], [0, size], [size, size]]) @ inverse[:, :2].T + inverse[:, 2]
    low, high = np.clip(corners.min(axis=0), 0, size), np.clip(corners.max(axis=0), 0, size)
    shared = float(np.prod(np.maximum(high - low, 0)) / min(size * size, np.prod(corners.max(0) - corners.min(0))))
    kind = "zoom2x" if scale > 1.5 else "shifted" if shared >= 0.5 else "overlap"
    return swap, shared, kind


def contact_sheet(pairs: list[tuple[Path, Path, str, np.ndarray | None]], out: Path, thumb: int = 240) -> None:
    """Draw pairs side by side, one pair per row, captioned, so a person can confirm them by eye.

    A third panel shows the second tile warped into the first one's frame by the SIFT transform: where the two
    tiles share ground, it lines up with the first panel.
    """
    rows = []
    for a, b, caption, matrix in pairs:
        row = np.full((thumb + 22, 3 * thumb + 16, 3), 255, np.uint8)
        img_a, img_b = cv2.imread(str(a)), cv2.imread(str(b))
        row[22:, :thumb] = cv2.resize(img_a, (thumb, thumb))
        row[22:, thumb + 8:2 * thumb + 8] = cv2.resize(img_b, (thumb, thumb))
        if matrix is not None:
            warped = cv2.warpAffine(img_b, cv2.invertAffineTransform(matrix), img_a.shape[1::-1])
            row[22:, 2 * thumb + 16:] = cv2.resize(warped, (thumb, thumb))
        cv2.putText(row, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(row)
    cv2.imwrite(str(out), np.vstack(rows))


def main() -> None:
    """Write candidates.csv (all evidence), plausible.csv and contact sheets to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rsscn7", type=Path, default=DEFAULT_RSSCN7)
    parser.add_argument("--out", type=Path, default=Path("/tmp/curate-overlaps"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    paths = list_tiles(args.rsscn7)

    shifts = shift_candidates(paths)
    zooms = zoom_candidates(paths)
    zooms = zooms.assign(i=zooms[["i", "j"]].min(axis=1), j=zooms[["i", "j"]].max(axis=1))
    zooms = zooms.groupby(["i", "j"], as_index=False)["zoom_peak"].max()
    neighbours = fastdup_neighbours(paths, args.out / "fastdup")
    cand = (shifts.merge(zooms, on=["i", "j"], how="outer").merge(neighbours, on=["i", "j"], how="outer")
            .merge(sift_candidates(paths), on=["i", "j"], how="outer"))

    features = sift_features(paths)
    verdicts = [verify_sift(features[i], features[j]) for i, j in zip(cand["i"], cand["j"])]
    cand["sift_inliers"] = [v[0] for v in verdicts]
    cand["sift_scale"] = [np.hypot(*v[1][:, 0]) if v[1] is not None else np.nan for v in verdicts]
    cand["shift_score"] = [verify_shift(paths[i], paths[j]) for i, j in zip(cand["i"], cand["j"])]
    cand["a"] = [paths[i].relative_to(args.rsscn7).as_posix() for i in cand["i"]]
    cand["b"] = [paths[j].relative_to(args.rsscn7).as_posix() for j in cand["j"]]
    cand.to_csv(args.out / "candidates.csv", index=False)

    # RANSAC on repeated texture or watermarks can collapse to a degenerate scale: only 1 and 2x are real here.
    scale_ok = cand["sift_scale"].between(0.45, 0.55) | cand["sift_scale"].between(0.95, 1.05)
    keep = ((cand["sift_inliers"] >= SIFT_PLAUSIBLE) & scale_ok) | (cand["shift_score"] > SHIFT_PLAUSIBLE)
    plausible = cand[keep].sort_values(["a", "b"]).reset_index(drop=True)
    matrices = {(i, j): m for (i, j), (_, m) in zip(zip(cand["i"], cand["j"]), verdicts)}
    described = [describe(matrices[(i, j)]) for i, j in zip(plausible["i"], plausible["j"])]
    swap = np.array([d[0] for d in described], dtype=bool)
    plausible.loc[swap, ["a", "b"]] = plausible.loc[swap, ["b", "a"]].to_numpy()
    plausible["shared"] = [round(d[1], 2) for d in described]
    plausible["kind"] = [d[2] for d in described]
    plausible.to_csv(args.out / "plausible.csv", index=False)
    for start in range(0, len(plausible), 4):
        chunk = plausible.iloc[start:start + 4]
        # Drawn in candidate order (i, j), the direction the SIFT transform was estimated in.
        contact_sheet([(paths[r.i], paths[r.j], f"#{start + k} {r.kind} {paths[r.i].name} | {paths[r.j].name} "
                        f"sift={r.sift_inliers} shared={r.shared:.2f}", matrices[(r.i, r.j)])
                       for k, r in enumerate(chunk.itertuples())],
                      args.out / f"sheet_{start // 4:03d}.png")
    print(f"{len(cand)} candidates, {len(plausible)} plausible; sheets in {args.out}")


if __name__ == "__main__":
    main()
