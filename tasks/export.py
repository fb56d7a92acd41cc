"""Export: the kept files of each curated split as folders, for training code that reads folders (torchvision's
`ImageFolder`) rather than Parquet.

`DEST/<curated split>/<label>/<file name>`, or `DEST/<curated split>/<file name>` for unlabeled files, made by hard
links (the default: no bytes copied, the sources untouched), symbolic links or copies. Two files that would land on
one name keep it in path order, the later ones with a suffix from a hash of their source path, so a name does not
change from one export to the next. Published like Curate's outputs (`tasks.outputs`): written into a staging
folder inside DEST, moved into place under a journal, so DEST holds the old export or the new one, whole.
"""

import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import pandas as pd

from tasks.errors import OutputError
from tasks.gate import read_manifest
from tasks.outputs import JOURNAL_FILE, LOCK_FILE, STAGING_PREFIX, exclusive_output, new_staging, publish
from tasks.schema import Action, Col

Mode = Literal["hardlink", "symlink", "copy"]
_MAKERS: dict[str, Callable[[str, Path], None]] = {
    "hardlink": lambda source, target: os.link(source, target),
    "symlink": lambda source, target: os.symlink(source, target),
    "copy": lambda source, target: shutil.copy2(source, target),  # the copy keeps the source's times
}
# What a publication leaves in DEST besides the export itself.
_OWN_ENTRIES = (JOURNAL_FILE, LOCK_FILE)


@dataclass(frozen=True)
class Exported:
    """What an export wrote: files per curated split, and how."""

    dest: Path
    mode: Mode
    files: dict[str, int]


def export_names(kept: pd.DataFrame) -> pd.Series:
    """Each kept row's path inside DEST (`split/label/name`, or `split/name` when unlabeled), unique: of the rows
    that would share one, the first by source path keeps it and the others get `~<8 hex digits of a hash of their
    source path>` before the suffix."""
    folder = kept[Col.CURATED_SPLIT].astype(str) + "/" + kept[Col.LABEL].astype("string").fillna("").astype(str)
    wanted = (folder + "/" + kept[Col.PATH].map(lambda path: PurePosixPath(path).name)).str.replace("//", "/")
    order = kept[Col.PATH].sort_values(kind="stable").index
    clashing = wanted[order].duplicated(keep="first").reindex(kept.index)

    def suffixed(row: int) -> str:
        path = PurePosixPath(wanted[row])
        digest = hashlib.sha256(str(kept.at[row, Col.PATH]).encode("utf-8", "backslashreplace")).hexdigest()[:8]
        return str(path.with_name(f"{path.stem}~{digest}{path.suffix}"))

    return wanted.where(~clashing, pd.Series({row: suffixed(row) for row in kept.index[clashing]}, dtype=object))


def _occupied(dest: Path) -> list[str]:
    """What DEST holds besides a publication's own bookkeeping."""
    if not dest.exists():
        return []
    return sorted(entry.name for entry in dest.iterdir()
                  if entry.name not in _OWN_ENTRIES and not entry.name.startswith(STAGING_PREFIX))


def export_splits(out: Path, dest: Path, mode: Mode = "hardlink", replace: bool = False) -> Exported:
    """Export the kept files of the curated output in `out` into `dest` (see the module's docstring); a non-empty
    `dest` is refused unless `replace`. `OutputError` names what went wrong; the sources are never written."""
    manifest, _ = read_manifest(out)
    kept = manifest[manifest[Col.ACTION] == Action.KEEP.value]
    dest = Path(dest)
    if _occupied(dest) and not replace:
        raise OutputError(f"{dest} is not empty ({', '.join(_occupied(dest)[:3])}...): give --replace to replace it")
    names = export_names(kept)
    with exclusive_output(dest):
        staging = new_staging(dest)
        make = _MAKERS[mode]
        try:
            for source, name in zip(kept[Col.PATH], names):
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                make(os.path.abspath(source), target)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            if error.errno == errno.EXDEV:
                raise OutputError(f"cannot hard-link into {dest}: it is on another file system than the images; "
                                  "use --mode copy or --mode symlink") from None
            raise OutputError(f"cannot export into {dest}: {error.strerror or error}: {error.filename}") from None
        stale = [entry for entry in _occupied(dest) if not (staging / entry).exists()]
        publish(staging, dest)
        for entry in stale:  # a split the earlier export had and this one has not
            shutil.rmtree(dest / entry) if (dest / entry).is_dir() else (dest / entry).unlink()
    files = kept[Col.CURATED_SPLIT].value_counts().sort_index()
    return Exported(dest=dest, mode=mode, files={str(split): int(count) for split, count in files.items()})
