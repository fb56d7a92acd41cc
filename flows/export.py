"""Export a curated output's kept files as folders, one per curated split:

    python -m flows.export OUT DEST [--mode hardlink|symlink|copy] [--replace]

Writes DEST/<split>/<label>/<file> (unlabeled files: DEST/<split>/<file>), by hard links unless told otherwise,
never touching the sources. A non-empty DEST is refused unless --replace. Exit status: 0 exported, 2 the output is
missing or unreadable, or DEST cannot be written.
"""

import argparse
import sys
from pathlib import Path

import tasks  # noqa: F401  (offline settings before anything else loads)
from tasks.errors import CurateError
from tasks.export import export_splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.export", description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("out", type=Path, help="a folder written by python -m flows.curate")
    parser.add_argument("dest", type=Path, help="the folder to write the splits into")
    parser.add_argument("--mode", choices=["hardlink", "symlink", "copy"], default="hardlink",
                        help="hard links (default: same file system as the images), symbolic links or copies")
    parser.add_argument("--replace", action="store_true", help="replace what DEST already holds")
    args = parser.parse_args(argv)
    try:
        exported = export_splits(args.out, args.dest, args.mode, args.replace)
    except CurateError as error:
        print(f"export: error: {error}", file=sys.stderr)
        return error.exit_status
    counts = ", ".join(f"{split}: {count:,}" for split, count in exported.files.items())
    print(f"exported {sum(exported.files.values()):,} files into {exported.dest} by {exported.mode} ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
