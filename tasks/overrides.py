"""A reviewer's decisions: a CSV (columns path, action) or YAML (path: action) file that later runs honour."""

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import yaml

from tasks.errors import ConfigError
from tasks.schema import Action, Col

ALLOWED = (Action.KEEP, Action.DROP)
REVIEWER = "reviewer: "  # how the reason of a file decided by a reviewer begins


def read_overrides(path: Path) -> dict[str, Action]:
    """Read a reviewer's file of path -> keep or drop; `ConfigError` names the file and the bad entry."""
    try:
        # newline="": line breaks stay as written, so a path that holds one (quoted in the CSV) reads back exactly.
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except OSError as error:
        raise ConfigError(f"cannot read review overrides {path}: {error.strerror or error}") from None
    if Path(path).suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text, newline="")))  # one stream: a quoted field may span lines
        if rows and not {"path", "action"} <= set(rows[0]):
            raise ConfigError(f"review overrides {path}: the CSV needs the columns path and action")
        entries = [(row["path"], row["action"]) for row in rows]
    else:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"review overrides {path} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"review overrides {path} must map each path to keep or drop")
        entries = list(data.items())
    overrides = {}
    for file, action in entries:
        if str(action).strip() not in {allowed.value for allowed in ALLOWED}:
            raise ConfigError(f"review overrides {path}: {file}: action must be keep or drop, not {action!r}")
        overrides[str(file).strip()] = Action(str(action).strip())
    return overrides


def apply_overrides(manifest: pd.DataFrame, overrides: Mapping[str, Action]) -> pd.DataFrame:
    """The manifest with the reviewer's actions in place; the reason keeps what Curate had decided.

    An unreadable file is never kept, whatever the file says: nothing downstream could open it."""
    if not overrides:
        return manifest
    manifest = manifest.copy()
    wanted = manifest[Col.PATH].map(overrides)
    applies = wanted.notna() & (manifest[Col.VALID] | (wanted == Action.DROP))
    # What Curate decided, in words: "keep: no issue"; a reason that begins with its action ("review: outlier")
    # is not prefixed with it again.
    rows = manifest.loc[applies]
    said = [reason.startswith(f"{action}: ") for action, reason in zip(rows[Col.ACTION], rows[Col.REASON])]
    before = rows[Col.REASON].where(said, rows[Col.ACTION] + ": " + rows[Col.REASON])
    manifest.loc[applies, Col.REASON] = REVIEWER + wanted[applies].astype(str) + " (Curate: " + before + ")"
    manifest.loc[applies, Col.ACTION] = wanted[applies].astype(str)
    return manifest
