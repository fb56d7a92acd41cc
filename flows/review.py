"""Put the files of some of the report's galleries on an output's review page too, to keep or drop them by hand:

    python -m flows.review OUT --gallery blurry [--gallery outliers ...]

Rewrites OUT/report/review.html (and adds the previews it needs): the files waiting for a reviewer, then the files
the named galleries show, then those a reviewer already decided. The gallery names are the report's section ids
(the part after # in its links). Without --gallery, the page is written as the run wrote it. Exit status: 0 written,
2 the output is missing or unreadable, a gallery is unknown, or a run is writing to OUT.
"""

import argparse
import html
import re
import sys
from pathlib import Path

import tasks  # noqa: F401  (offline settings before anything else loads)
from tasks.errors import ConfigError, CurateError
from tasks.gate import read_manifest, read_pairs
from tasks.outputs import OutputPaths, exclusive_output
from tasks.report import ReportLimits, build_galleries
from tasks.review_page import gallery_paths, write_review_page


def review_galleries(out: Path, keys: list[str]) -> tuple[Path, int]:
    """Rewrite `out`'s review page with the files of the galleries named `keys`; the page and its number of cards."""
    manifest, _ = read_manifest(out)
    pairs = read_pairs(out)
    limits = ReportLimits()
    galleries = {gallery.key: gallery for gallery in build_galleries(manifest, pairs, limits)}
    if unknown := [key for key in keys if key not in galleries]:
        raise ConfigError(f"unknown gallery {', '.join(unknown)}; the report's galleries: {', '.join(galleries)}")
    report = OutputPaths(out).report
    found = re.search(r"<title>(.*?)</title>", report.read_text(encoding="utf-8")) if report.is_file() else None
    title = html.unescape(found.group(1)) if found else f"Curate report: {out.name}"
    with exclusive_output(out):
        return write_review_page(report.parent, manifest, pairs, title,
                                 gallery_paths([galleries[key] for key in keys], limits))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.review", description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("out", type=Path, help="a folder written by python -m flows.curate")
    parser.add_argument("--gallery", action="append", default=[], metavar="NAME",
                        help="a gallery whose files get cards too, e.g. blurry, outliers, duplicates (repeatable)")
    args = parser.parse_args(argv)
    try:
        page, cards = review_galleries(args.out, args.gallery)
    except CurateError as error:
        print(f"review: error: {error}", file=sys.stderr)
        return error.exit_status
    print(f"{cards:,} cards: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
