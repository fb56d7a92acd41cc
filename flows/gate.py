"""Re-check an existing curated output right before training:

    python -m flows.gate OUT

Reads OUT/manifest.parquet and the configuration recorded in it, checks that every cleaned split in
OUT/splits/ still holds exactly the manifest's kept rows, and runs the quality gate's expectations again.
Exit status: 0 the gate passes, 1 it fails (one line names what failed), 2 the output is missing or unreadable.
"""

import argparse
import sys
from pathlib import Path

import tasks  # noqa: F401  (offline settings before anything else loads)
from tasks.errors import CurateError
from tasks.gate import check_output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.gate", description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("out", type=Path, help="a folder written by python -m flows.curate")
    args = parser.parse_args(argv)
    try:
        result = check_output(args.out)
    except CurateError as error:
        print(f"gate: error: {error}", file=sys.stderr)
        return error.exit_status
    print(result.message(), file=sys.stdout if result.success else sys.stderr)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
