"""Build the ground-truth benchmark dataset from the RSSCN7 tiles.

The tiles are split over ``train/<class>/``, ``val/<class>/`` and ``unlabeled/``; then known problems are injected:
near-duplicate copies (seven transforms), quality defects that *replace* their original, corrupt files and
out-of-domain photos. Some copies land in another split (split leaks) or under another class (label conflicts).
Everything is drawn from one seeded generator, so the same configuration always gives byte-identical files.

The result lives outside the repository (the tiles carry no licence): ``<work>/dataset/`` holds the images and
``<work>/truth/`` the ground truth (``ground_truth.json``, plus ``files.csv`` and ``pairs.csv`` for reading).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

DEFAULT_RSSCN7 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsscn7"
DEFAULT_WORK = Path("/tmp/curate-bench")
OVERLAPS_CSV = Path(__file__).resolve().parent / "rsscn7_overlaps.csv"

SPLITS = ("train", "val", "unlabeled")
LABELED_SPLITS = ("train", "val")
TRANSFORMS = ("exact", "jpeg", "downscale", "crop", "brightness", "mirror", "rot90")
QUALITY_KINDS = ("blurry", "dark", "bright")
CORRUPT_KINDS = ("zero_byte", "truncated", "not_an_image")
# Real, non-aerial photos that ship inside the packages (no download): skimage.data names, then matplotlib's.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "hubble_deep_field",
                  "immunohistochemistry", "moon", "page", "text", "clock", "retina", "cell")
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)
TILE_SIZE = 400
SAVE_QUALITY = 90


@dataclass(frozen=True)
class BenchConfig:
    """Everything that decides the built dataset; its hash is the cache key."""

    seed: int = 20240601
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    copies_per_transform: int = 20
    leaks_per_transform: int = 4  # copies placed in another split than their original
    conflicts_per_transform: int = 2  # copies placed under another class of the same labelled split
    per_quality_kind: int = 30
    corrupt_counts: dict[str, int] = field(
        default_factory=lambda: {"zero_byte": 3, "truncated": 4, "not_an_image": 3})
    ood_count: int = 15


@dataclass(frozen=True)
class Placement:
    """Where a file goes in the built dataset."""

    split: str
    label: str | None  # None for ``unlabeled/``

    def folder(self, root: Path) -> Path:
        """Return the folder this placement stands for below the dataset root."""
        return root / self.split if self.label is None else root / self.split / self.label


def list_tiles(root: Path) -> list[Path]:
    """Return the RSSCN7 tiles below ``root`` (``<class>/*.jpg``), sorted so every run sees the same order."""
    return sorted(root.glob("*/*.jpg"))


def load_overlaps(csv_path: Path = OVERLAPS_CSV) -> pd.DataFrame:
    """Return the confirmed natural overlap pairs (``a``, ``b`` relative to RSSCN7; ``kind``; ``note``)."""
    if not csv_path.exists():
        return pd.DataFrame(columns=["a", "b", "kind", "note"])
    return pd.read_csv(csv_path, comment="#")


def cache_key(config: BenchConfig, rsscn7: Path, overlaps: pd.DataFrame) -> str:
    """Hash the configuration, the source listing, the overlap list and this module's code."""
    digest = hashlib.sha256()
    digest.update(json.dumps(asdict(config), sort_keys=True).encode())
    for tile in list_tiles(rsscn7):
        digest.update(f"{tile.relative_to(rsscn7)}:{tile.stat().st_size}".encode())
    digest.update(overlaps.to_csv(index=False).encode())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def _neutral_name(seed: int, tag: str, suffix: str = ".jpg") -> str:
    """Name injected files by a hash, so a file name tells a detector nothing about how it was made."""
    return "img_" + hashlib.sha1(f"{seed}:{tag}".encode()).hexdigest()[:10] + suffix


def _save_jpeg(img: Image.Image, path: Path, quality: int = SAVE_QUALITY) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert("RGB").save(path, format="JPEG", quality=quality)


def apply_transform(img: Image.Image, transform: str, index: int, rng: np.random.Generator) -> tuple[Image.Image, int, dict]:
    """Return the near-duplicate of ``img`` for ``transform``, its JPEG quality and the parameters drawn.

    ``index`` (the copy's rank within its transform) alternates the variants (brighter/darker, 90/270 degrees,
    crop resized back or not) so each variant is equally represented.
    """
    if transform == "jpeg":
        quality = int(rng.integers(20, 31))
        return img, quality, {"quality": quality}
    if transform == "downscale":
        return img.resize((img.width // 2, img.height // 2), Image.LANCZOS), SAVE_QUALITY, {"scale": 0.5}
    if transform == "crop":
        area = float(rng.uniform(0.6, 0.8))
        side = round(img.width * area ** 0.5)
        x0, y0 = (int(v) for v in rng.integers(0, img.width - side + 1, size=2))
        out = img.crop((x0, y0, x0 + side, y0 + side))
        resized = index % 2 == 0
        if resized:
            out = out.resize(img.size, Image.LANCZOS)
        return out, SAVE_QUALITY, {"area": round(area, 3), "box": [x0, y0, side], "resized_back": resized}
    if transform == "brightness":
        factor = 1.25 if index % 2 == 0 else 0.75
        return ImageEnhance.Brightness(img).enhance(factor), SAVE_QUALITY, {"factor": factor}
    if transform == "mirror":
        return ImageOps.mirror(img), SAVE_QUALITY, {}
    if transform == "rot90":
        degrees = 90 if index % 2 == 0 else 270
        return img.rotate(degrees, expand=True), SAVE_QUALITY, {"degrees": degrees}
    raise ValueError(f"unknown transform {transform!r}")


def degrade(img: Image.Image, kind: str, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """Return a clearly defective version of ``img`` (a quality issue, not a near duplicate) and its parameters."""
    if kind == "blurry":
        radius = float(rng.uniform(5.0, 8.0))
        return img.filter(ImageFilter.GaussianBlur(radius)), {"radius": round(radius, 2)}
    pixels = np.asarray(img, dtype=np.float32)
    if kind == "dark":
        # Scale to a target mean rather than by a fixed factor: RSSCN7 tiles range from dark water to bright fields.
        target = float(rng.uniform(4.0, 10.0))
        out = pixels * (target / max(pixels.mean(), 1.0))
        return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)), {"target_mean": round(target, 2)}
    if kind == "bright":
        keep = float(rng.uniform(0.08, 0.18))  # share of the original contrast left after washing out
        out = 255.0 - (255.0 - pixels) * keep
        return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)), {"contrast_kept": round(keep, 3)}
    raise ValueError(f"unknown quality kind {kind!r}")


def load_ood_photos() -> list[tuple[str, Image.Image]]:
    """Return the bundled out-of-domain photos as RGB, centre-cropped square and resized to the tile size."""
    import matplotlib.cbook  # noqa: PLC0415 - bench-only dependency, imported where needed
    import skimage.data  # noqa: PLC0415

    raw: list[tuple[str, np.ndarray]] = [(f"skimage.data.{name}", getattr(skimage.data, name)())
                                         for name in SKIMAGE_PHOTOS]
    raw += [(f"matplotlib.sample_data/{name}",
             np.asarray(Image.open(matplotlib.cbook.get_sample_data(name, asfileobj=False))))
            for name in MATPLOTLIB_PHOTOS]
    photos = []
    for name, array in raw:
        img = Image.fromarray(array).convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((TILE_SIZE, TILE_SIZE), Image.LANCZOS)
        photos.append((name, img))
    return photos


class _Builder:
    """Holds the generator and the records while one dataset is written; used only by :func:`build_dataset`."""

    def __init__(self, config: BenchConfig, rsscn7: Path, root: Path) -> None:
        self.config = config
        self.rsscn7 = rsscn7
        self.root = root
        self.rng = np.random.default_rng(config.seed)
        self.files: list[dict] = []
        self.pairs: list[dict] = []

    def record(self, path: Path, place: Placement, kind: str, source: str, **params: object) -> None:
        self.files.append({"path": str(path), "relpath": path.relative_to(self.root).as_posix(),
                           "split": place.split, "label": place.label, "kind": kind, "source": source,
                           "params": json.dumps(params, sort_keys=True)})

    def place_split(self, tiles: list[str]) -> dict[str, Placement]:
        """Split tiles per class (stratified) by ``split_fractions``; unlabeled tiles lose their class."""
        placements: dict[str, Placement] = {}
        by_class: dict[str, list[str]] = {}
        for tile in tiles:
            by_class.setdefault(tile.split("/")[0], []).append(tile)
        for label, members in sorted(by_class.items()):
            order = [members[k] for k in self.rng.permutation(len(members))]
            n_train = round(len(order) * self.config.split_fractions[0])
            n_val = round(len(order) * self.config.split_fractions[1])
            for rank, tile in enumerate(order):
                split = "train" if rank < n_train else "val" if rank < n_train + n_val else "unlabeled"
                placements[tile] = Placement(split, None if split == "unlabeled" else label)
        return placements

    def other_placement(self, original: Placement, true_label: str, role: str) -> Placement:
        """Return where a copy goes: same place, another split (leak) or another class (conflict)."""
        if role == "leak":
            split = str(self.rng.choice([s for s in SPLITS if s != original.split]))
            return Placement(split, None if split == "unlabeled" else true_label)
        if role == "conflict":
            classes = sorted(p.name for p in self.rsscn7.iterdir() if p.is_dir())
            return Placement(original.split, str(self.rng.choice([c for c in classes if c != true_label])))
        return original


def build_dataset(rsscn7: Path, work: Path, config: BenchConfig = BenchConfig(),
                  overlaps: pd.DataFrame | None = None) -> Path:
    """Build the dataset and its ground truth in ``work`` unless an identical build is there; return the truth file.

    Tiles in a confirmed natural overlap are never degraded or truncated, so every quality defect and corrupt file
    stands alone and every natural pair is present as two originals.
    """
    overlaps = load_overlaps() if overlaps is None else overlaps
    key = cache_key(config, rsscn7, overlaps)
    truth_json = work / "truth" / "ground_truth.json"
    if truth_json.exists() and json.loads(truth_json.read_text())["cache_key"] == key:
        return truth_json
    root = work / "dataset"
    shutil.rmtree(root, ignore_errors=True)
    (work / "truth").mkdir(parents=True, exist_ok=True)
    b = _Builder(config, rsscn7, root)
    rng = b.rng

    tiles = [t.relative_to(rsscn7).as_posix() for t in list_tiles(rsscn7)]
    in_overlap = set(overlaps["a"]) | set(overlaps["b"])
    standalone = [tiles[k] for k in rng.permutation(len(tiles)) if tiles[k] not in in_overlap]
    n_quality = config.per_quality_kind * len(QUALITY_KINDS)
    quality_tiles = standalone[:n_quality]
    truncated_sources = standalone[n_quality:n_quality + config.corrupt_counts["truncated"]]
    placements = b.place_split([t for t in tiles if t not in set(truncated_sources)])

    # Originals (quality tiles are written degraded, under the original's name and place).
    degraded_kind = {t: QUALITY_KINDS[k // config.per_quality_kind] for k, t in enumerate(quality_tiles)}
    for tile, place in placements.items():
        dest = place.folder(root) / Path(tile).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if tile in degraded_kind:
            img, params = degrade(Image.open(rsscn7 / tile).convert("RGB"), degraded_kind[tile], rng)
            _save_jpeg(img, dest)
            b.record(dest, place, degraded_kind[tile], tile, **params)
        else:
            shutil.copyfile(rsscn7 / tile, dest)
            b.record(dest, place, "original", tile)

    # Near-duplicate copies: each source is copied once, so each injected group is exactly one pair.
    clean = [t for t in placements if t not in degraded_kind]
    pool = [clean[k] for k in rng.permutation(len(clean))]
    labeled_pool = [t for t in pool if placements[t].label is not None]
    used: set[str] = set()

    def take(candidates: list[str]) -> str:
        tile = next(t for t in candidates if t not in used)
        used.add(tile)
        return tile

    original_path = {f["source"]: f["path"] for f in b.files if f["kind"] == "original"}
    for transform in TRANSFORMS:
        for index in range(config.copies_per_transform):
            role = ("leak" if index < config.leaks_per_transform else
                    "conflict" if index < config.leaks_per_transform + config.conflicts_per_transform else "same")
            tile = take(labeled_pool if role == "conflict" else pool)
            true_label = tile.split("/")[0]
            place = b.other_placement(placements[tile], true_label, role)
            dest = place.folder(root) / _neutral_name(config.seed, f"{transform}:{index}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if transform == "exact":
                shutil.copyfile(rsscn7 / tile, dest)
                params: dict = {}
            else:
                img, quality, params = apply_transform(Image.open(rsscn7 / tile).convert("RGB"), transform, index, rng)
                _save_jpeg(img, dest, quality)
            b.record(dest, place, "copy", tile, transform=transform, role=role, **params)
            orig = placements[tile]
            b.pairs.append({"a": str(dest), "b": original_path[tile], "transform": transform, "note": role,
                            "cross_split": place.split != orig.split,
                            "label_conflict": place.label is not None and orig.label is not None
                            and place.label != orig.label})

    # Corrupt files, spread over random folders.
    folders = sorted({Path(f["path"]).parent for f in b.files})
    for kind in CORRUPT_KINDS:
        for index in range(config.corrupt_counts[kind]):
            folder = folders[int(rng.integers(len(folders)))]
            dest = folder / _neutral_name(config.seed, f"{kind}:{index}")
            if kind == "zero_byte":
                dest.write_bytes(b"")
                source = ""
            elif kind == "truncated":
                source = truncated_sources[index]
                data = (rsscn7 / source).read_bytes()
                dest.write_bytes(data[: int(len(data) * rng.uniform(0.25, 0.6))])
            else:
                dest.write_text("This is a text file, not a JPEG image.\n")
                source = ""
            place = _placement_of(dest, root)
            b.record(dest, place, "corrupt", source, corrupt_kind=kind)

    # Out-of-domain photos, spread over random folders.
    for index, (name, img) in enumerate(load_ood_photos()[: config.ood_count]):
        folder = folders[int(rng.integers(len(folders)))]
        dest = folder / _neutral_name(config.seed, f"ood:{index}")
        _save_jpeg(img, dest)
        b.record(dest, _placement_of(dest, root), "ood", name)

    # Natural overlaps: both tiles are always present as originals (see the docstring).
    for row in overlaps.itertuples():
        pa, pb = placements[row.a], placements[row.b]
        b.pairs.append({"a": original_path[row.a], "b": original_path[row.b], "transform": f"natural:{row.kind}",
                        "note": row.note, "cross_split": pa.split != pb.split,
                        "label_conflict": pa.label is not None and pb.label is not None and pa.label != pb.label})

    files = pd.DataFrame(b.files).sort_values("relpath").reset_index(drop=True)
    pairs = pd.DataFrame(b.pairs)
    files.to_csv(work / "truth" / "files.csv", index=False)
    pairs.to_csv(work / "truth" / "pairs.csv", index=False)
    truth_json.write_text(json.dumps({
        "cache_key": key, "config": asdict(config), "rsscn7": str(rsscn7), "dataset": str(root),
        "files": files.to_dict(orient="records"), "pairs": pairs.to_dict(orient="records"),
    }, indent=1))
    return truth_json


def _placement_of(path: Path, root: Path) -> Placement:
    parts = path.relative_to(root).parts
    return Placement(parts[0], parts[1] if len(parts) == 3 else None)


@dataclass(frozen=True)
class GroundTruth:
    """The built dataset's truth: one row per file, and the true duplicate pairs (injected and natural)."""

    dataset: Path
    files: pd.DataFrame  # path, relpath, split, label, kind, source, params
    pairs: pd.DataFrame  # a, b, transform, note, cross_split, label_conflict


def load_truth(truth_json: Path) -> GroundTruth:
    """Read the ground truth written by :func:`build_dataset`."""
    data = json.loads(truth_json.read_text())
    return GroundTruth(Path(data["dataset"]), pd.DataFrame(data["files"]), pd.DataFrame(data["pairs"]))


def composition(truth: GroundTruth) -> pd.DataFrame:
    """Count files per kind (copies per transform) and split, for the report."""
    files = truth.files.copy()
    transform = files["params"].map(lambda p: json.loads(p).get("transform"))
    files["kind"] = files["kind"].where(transform.isna(), "copy:" + transform.fillna(""))
    return files.pivot_table(index="kind", columns="split", values="path", aggfunc="count", fill_value=0)
