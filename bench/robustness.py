"""Robustness to transforms the quality benchmark does not inject, in one command:

    .venv/bin/python -m bench.robustness [--rsscn7 DIR] [--work DIR] [--results DIR] [--copies N]

Builds (or reuses) the quality benchmark's dataset, links its files into a new folder, and adds ``--copies``
copies of untouched originals for each transform in ``TRANSFORMS`` to ``unlabeled/``, under neutral names. Runs
the real flow on it and scores its related pairs (``pairs.parquet``) like the quality benchmark's detection, the new
copies included: precision over everything, recall per transform (a copy found under any relation), and how many
found copies of each transform were recorded as duplicate or overlap. Writes ``bench/results/robustness.md`` and
``.json``.

The transforms were written after Curate's defaults had been chosen on the quality benchmark, to see how they
hold on edits they were not tuned for: other flips and turns, heavier crops (alone and combined with a turn and
a mirror), small rotations, colour, exposure, noise, padding and resizing; and a second set, written a stop
later, of distortions (stretch, shear, perspective, a 45-degree turn), overlays, filters, a quarter crop and
half a tile; and a third of overlays that every copy carries at the same place (an info band, a watermark), so
that copies of different originals share them exactly and any match between them shows in the precision; and a
fourth of occlusions (a sticker, an erased ninth), uneven light, frames, a tiny copy and combinations. Not part of
the unit tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from bench.dataset import DEFAULT_RSSCN7, DEFAULT_WORK, SPLITS, BenchConfig, build_dataset, load_truth
from bench.run_quality import DEFAULT_RESULTS, curate_summary, machine, pair_list, run_curate
from bench.score import RELATIONS, detection_scores

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]


def _crop(image: Image.Image, area: float, rng: np.random.Generator) -> Image.Image:
    """A random square crop of `area` of the image's area."""
    side = round(min(image.size) * area**0.5)
    left, top = (int(rng.integers(0, extent - side + 1)) for extent in image.size)
    return image.crop((left, top, left + side, top + side))


def _with_noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, np.float32)
    return Image.fromarray(np.clip(pixels + rng.normal(0.0, 12.0, pixels.shape), 0, 255).astype(np.uint8))


def _hue_turned(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + 40) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def _padded(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    canvas = Image.new("RGB", (image.width, image.height + 100))
    canvas.paste(image, (0, 50))
    return canvas


def _perspective(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Each corner moved inwards by up to 8 % of the side, as from an oblique view."""
    width, height = image.size
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    inwards = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * rng.uniform(0, 0.08, (4, 2)) * [width, height]
    warp = cv2.getPerspectiveTransform(corners, (corners + inwards).astype(np.float32))
    return Image.fromarray(cv2.warpPerspective(np.asarray(image), warp, (width, height)))


def _captioned(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Six white captions at random places and a black bar over the bottom 10 %."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        draw.text((int(rng.integers(0, image.width * 3 // 4)), int(rng.integers(0, image.height * 9 // 10))),
                  "SAMPLE (c) 2024", fill=(255, 255, 255))
    draw.rectangle((0, image.height * 9 // 10, image.width, image.height), fill=(0, 0, 0))
    return image


def _info_band(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A provider's black info band with the same text along the bottom 7.5 %: every copy carries the same one,
    so copies of different originals share it exactly."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    top = image.height * 37 // 40
    draw.rectangle((0, top, image.width, image.height), fill=(0, 0, 0))
    draw.text((image.width // 50, top + 3), "Provider X  |  Scene 2026-04-11  |  Res 0.5 m", fill=(255, 255, 255),
              font=ImageFont.load_default(round(image.height * 0.045)))
    return image


def _watermarked(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The same translucent white word twice across the centre of every copy."""
    image = image.copy()
    draw = ImageDraw.Draw(image, "RGBA")
    draw.text((image.width // 2 - image.width * 3 // 10, image.height // 2 - image.height // 30), "SAMPLE  SAMPLE",
              fill=(255, 255, 255, 120), font=ImageFont.load_default(round(image.height * 0.09)))
    return image


def _stickered(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """An opaque yellow disc half the image across (a fifth of its area), at a random place (a sticker)."""
    image = image.copy()
    left, top = int(rng.integers(0, image.width // 2)), int(rng.integers(0, image.height // 2))
    ImageDraw.Draw(image).ellipse((left, top, left + image.width // 2, top + image.height // 2), fill=(250, 200, 30))
    return image


def _erased(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A black rectangle over a ninth of the image, at a random place."""
    pixels = np.asarray(image).copy()
    height, width = pixels.shape[:2]
    top, left = int(rng.integers(0, height * 2 // 3)), int(rng.integers(0, width * 2 // 3))
    pixels[top : top + height // 3, left : left + width // 3] = 0
    return Image.fromarray(pixels)


def _shaded(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness falling from 1.3 at the right edge to 0.5 at the left, as under uneven light."""
    pixels = np.asarray(image, np.float32) * np.linspace(0.5, 1.3, image.width)[None, :, None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _vignetted(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Darkening towards the corners, as through a lens."""
    height, width = image.height, image.width
    rows, columns = np.mgrid[:height, :width]
    radius = np.hypot((rows - height / 2) / height, (columns - width / 2) / width)
    pixels = np.asarray(image, np.float32) * (1 - 1.2 * radius[..., None] ** 2)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _framed(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A white frame 30 pixels wide."""
    canvas = Image.new("RGB", (image.width + 60, image.height + 60), (255, 255, 255))
    canvas.paste(image, (30, 30))
    return canvas


def _in_a_corner(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The image at half size in the top-left quarter of a black canvas of its own size."""
    canvas = Image.new("RGB", image.size)
    canvas.paste(image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS), (0, 0))
    return canvas


def _blurred_and_noisy(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _with_noise(image.filter(ImageFilter.GaussianBlur(1.5)), rng)


def _sepia(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    grey = np.asarray(image.convert("L"), np.float32)[..., None]
    return Image.fromarray(np.clip(grey * [1.07, 0.74, 0.43], 0, 255).astype(np.uint8))


# name -> (edit, JPEG quality of the saved copy)
TRANSFORMS: dict[str, tuple[Edit, int]] = {
    "vflip": (lambda image, rng: image.transpose(Image.Transpose.FLIP_TOP_BOTTOM), 90),
    "rotate180": (lambda image, rng: image.transpose(Image.Transpose.ROTATE_180), 90),
    "transpose": (lambda image, rng: image.transpose(Image.Transpose.TRANSPOSE), 90),
    "rotate7": (lambda image, rng: image.rotate(7, resample=Image.Resampling.BICUBIC), 90),
    "rotate20+crop": (lambda image, rng: image.rotate(20, resample=Image.Resampling.BICUBIC)
                      .crop((60, 60, image.width - 60, image.height - 60)), 90),
    "crop45%+resize": (lambda image, rng: _crop(image, 0.45, rng).resize(image.size, Image.Resampling.LANCZOS), 90),
    "crop45%+rotate270": (lambda image, rng: _crop(image, 0.45, rng).transpose(Image.Transpose.ROTATE_270), 90),
    "crop36%+rotate90+mirror": (lambda image, rng: _crop(image, 0.36, rng).transpose(Image.Transpose.ROTATE_90)
                                .transpose(Image.Transpose.FLIP_LEFT_RIGHT), 90),
    "grey": (lambda image, rng: image.convert("L").convert("RGB"), 90),
    "hue+40": (_hue_turned, 90),
    "saturation1.8": (lambda image, rng: ImageEnhance.Color(image).enhance(1.8), 90),
    "contrast0.6": (lambda image, rng: ImageEnhance.Contrast(image).enhance(0.6), 90),
    "gamma0.6": (lambda image, rng: Image.eval(image, lambda level: int(255 * (level / 255) ** 0.6)), 90),
    "noise12": (_with_noise, 90),
    "jpeg10": (lambda image, rng: image, 10),
    "pad": (_padded, 90),
    "upscale1.6": (lambda image, rng: image.resize((image.width * 8 // 5, image.height * 8 // 5),
                                                   Image.Resampling.BICUBIC), 90),
    "downscale0.25": (lambda image, rng: image.resize((image.width // 4, image.height // 4),
                                                      Image.Resampling.LANCZOS), 90),
    # A second set, written at a later stop (2026-11-26), after the first had been used to make changes.
    "stretch0.7x": (lambda image, rng: image.resize((image.width * 7 // 10, image.height),
                                                    Image.Resampling.LANCZOS), 90),
    "rotate45": (lambda image, rng: image.rotate(45, resample=Image.Resampling.BICUBIC), 90),
    "rotate3": (lambda image, rng: image.rotate(3, resample=Image.Resampling.BICUBIC), 90),
    "perspective": (_perspective, 90),
    "shear0.15": (lambda image, rng: image.transform(image.size, Image.Transform.AFFINE, (1, 0.15, 0, 0, 1, 0),
                                                     Image.Resampling.BICUBIC), 90),
    "captions+bar": (_captioned, 90),
    "blur2": (lambda image, rng: image.filter(ImageFilter.GaussianBlur(2)), 90),
    "sharpen": (lambda image, rng: image.filter(ImageFilter.UnsharpMask(3, 200, 2)), 90),
    "crop25%": (lambda image, rng: _crop(image, 0.25, rng), 90),
    "crop25%+resize": (lambda image, rng: _crop(image, 0.25, rng).resize(image.size, Image.Resampling.LANCZOS), 90),
    "crop60%+brighten": (lambda image, rng: ImageEnhance.Brightness(_crop(image, 0.6, rng)).enhance(1.4), 90),
    "crop70%+rotate180": (lambda image, rng: _crop(image, 0.7, rng).transpose(Image.Transpose.ROTATE_180), 90),
    "darken0.3": (lambda image, rng: ImageEnhance.Brightness(image).enhance(0.3), 90),
    "posterize16": (lambda image, rng: image.quantize(16).convert("RGB"), 90),
    "top-half": (lambda image, rng: image.crop((0, 0, image.width, image.height // 2)), 90),
    "down3x+up": (lambda image, rng: image.resize((image.width // 3, image.height // 3)).resize(
        image.size, Image.Resampling.BICUBIC), 90),
    "half-size+q95": (lambda image, rng: image.resize((image.width // 2, image.height // 2)), 95),
    "rotate90+jpeg20": (lambda image, rng: image.transpose(Image.Transpose.ROTATE_90), 20),
    # A third set: overlays shared by copies of different originals.
    "info-band": (_info_band, 90),
    "watermark": (_watermarked, 90),
    # A fourth set: occlusions, uneven light, frames and combinations.
    "sticker": (_stickered, 90),
    "erase-ninth": (_erased, 90),
    "light-gradient": (_shaded, 90),
    "vignette": (_vignetted, 90),
    "white-frame": (_framed, 90),
    "half-size-in-corner": (_in_a_corner, 90),
    "blur1.5+noise12": (_blurred_and_noisy, 90),
    "sepia": (_sepia, 90),
    "tiny56": (lambda image, rng: image.resize((56, 56), Image.Resampling.LANCZOS), 90),
    "rotate33": (lambda image, rng: image.rotate(33, resample=Image.Resampling.BICUBIC), 90),
    "crop70%+rotate90+jpeg30": (lambda image, rng: _crop(image, 0.7, rng).transpose(Image.Transpose.ROTATE_90), 30),
}

COPY_SEED = 7


def build(truth_files: pd.DataFrame, truth_pairs: pd.DataFrame, base: Path, root: Path, copies: int,
          seed: int = COPY_SEED) -> pd.DataFrame:
    """Link `base`'s files into `root` and add `copies` copies per transform to `root/unlabeled`; return the new
    pairs (a: original, b: copy, transform: heldout:<name>), with paths under `base` for the originals."""
    shutil.rmtree(root, ignore_errors=True)
    for path in base.rglob("*"):
        if path.is_file():
            link = root / path.relative_to(base)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, link)
    in_pairs = set(truth_pairs["a"]) | set(truth_pairs["b"])
    untouched = truth_files[(truth_files["kind"] == "original") & ~truth_files["path"].isin(in_pairs)]
    rng = np.random.default_rng(seed)
    sources = untouched["path"].to_numpy()[rng.permutation(len(untouched))][: copies * len(TRANSFORMS)]
    rows = []
    for index, (source, name) in enumerate(zip(sources, np.repeat(list(TRANSFORMS), copies))):
        edit, quality = TRANSFORMS[name]
        with Image.open(source) as image:
            copy = edit(image.convert("RGB"), rng)
        target = root / "unlabeled" / f"heldout_{index:04d}.jpg"
        copy.convert("RGB").save(target, format="JPEG", quality=quality)
        rows.append({"a": source, "b": str(target), "transform": f"heldout:{name}", "cross_split": False,
                     "label_conflict": False})
    return pd.DataFrame(rows)


def recorded_as(counts: dict[str, int]) -> str:
    """The found copies recorded as duplicate / overlap (and as exact, in the unlikely case there are any)."""
    text = f"{counts['duplicate']} / {counts['overlap']}"
    return text + (f" (+{counts['exact']} exact)" if counts["exact"] else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Curate robustness benchmark (transforms not tuned on)")
    parser.add_argument("--rsscn7", type=Path, default=DEFAULT_RSSCN7, help="RSSCN7 root (<class>/*.jpg)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="work folder, outside the repository")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where robustness.md/.json go")
    parser.add_argument("--copies", type=int, default=12, help="copies per transform")
    parser.add_argument("--seed", type=int, default=COPY_SEED, help="seed of the copies: which originals, which edits")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    truth = load_truth(build_dataset(args.rsscn7.resolve(), work, BenchConfig()))
    dataset = work / "robustness" / "dataset"
    added = build(truth.files, truth.pairs, truth.dataset, dataset, args.copies, args.seed)
    print(f"dataset: {len(truth.files)} files linked, {len(added)} copies added in {dataset}", flush=True)

    manifest, predicted, curate = run_curate(dataset, work / "robustness" / "curate-out")
    if manifest is None:
        print(f"Curate failed: {curate['skipped']}", flush=True)
        return 1
    # The run's paths are resolved: the linked files are named by their targets, as in the truth.
    pairs = pd.concat([truth.pairs, added.assign(b=added["b"].map(os.path.realpath))], ignore_index=True)
    scores = detection_scores(predicted, pairs)
    recall = {name.removeprefix("heldout:"): value for name, value in scores["recall_by_transform"].items()
              if name.startswith("heldout:")}
    relations = {name.removeprefix("heldout:"): value for name, value in scores["relations_by_transform"].items()
                 if name.startswith("heldout:")}
    lines = ["| transform | recall | recorded as duplicate / overlap |", "|---|---|---|"]
    lines += [f"| {name} | {value['recall']:.2f} ({value['found']}/{value['total']}) | "
              f"{recorded_as(relations[name])} |" for name, value in recall.items()]
    found, total = sum(v["found"] for v in recall.values()), sum(v["total"] for v in recall.values())
    everything = {relation: sum(v[relation] for v in relations.values()) for relation in RELATIONS}
    lines.append(f"| **all** | **{found / total:.3f} ({found}/{total})** | **{recorded_as(everything)}** |")
    command = shlex.join(["python", "-m", "bench.robustness", *(sys.argv[1:] if argv is None else argv)])
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    missed = [pair for pair in scores["missed_pairs"] if pair[2].startswith("heldout:")]
    report = "\n\n".join([
        "# Curate robustness benchmark",
        f"Command: `{command}`  \nDate: {date}  \n"
        + "Machine: {cpu}, {cores} cores, {ram_gib} GiB RAM, Python {python}".format(**machine()),
        f"The quality benchmark's {len(truth.files)} files, plus {args.copies} copies of untouched originals for "
        f"each of {len(TRANSFORMS)} transforms it does not inject (in `unlabeled/`).",
        "## Recall of the added copies\n\n" + "\n".join(lines),
        f"Related pairs (`pairs.parquet`, any relation) over the whole dataset: precision {scores['precision']:.3f} "
        f"({scores['correct_pairs']}/{scores['predicted_pairs']}), recall {scores['recall']:.3f} "
        f"({scores['found_pairs']}/{scores['true_pairs']}).",
        "## Missed copies\n\n" + ("\n".join(f"- {t.removeprefix('heldout:')}: `{Path(a).name}` ~ `{Path(b).name}`"
                                           for a, b, t in missed) or "None."),
        *(["## Wrong related pairs\n\n" + pair_list(scores["false_pairs"], Path("/"))]
          if scores["false_pairs"] else []),
        "## Curate run\n\n" + curate_summary(curate),
    ]) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "robustness.md").write_text(report)
    (args.results / "robustness.json").write_text(json.dumps({
        "command": command, "date": date, "machine": machine(), "copies_per_transform": args.copies,
        "recall": recall, "relations": relations,
        "scores": {k: v for k, v in scores.items() if k not in ("recall_by_transform", "relations_by_transform")},
        "curate": curate, "splits": list(SPLITS),
    }, indent=1, default=str))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
