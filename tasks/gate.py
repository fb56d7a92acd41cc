"""Checks on an existing curated output, for a training pipeline to run right before it trains."""

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from tasks.config import parse_config
from tasks.errors import DatasetError
from tasks.expectations import ExpectationOutcome, GateResult, run_expectations
from tasks.outputs import OutputPaths, interrupted_publication
from tasks.schema import Action, Col, read_metadata


def read_manifest(out: Path) -> tuple[pd.DataFrame, dict]:
    """The manifest of a curated output and its metadata; `DatasetError` if missing or unreadable."""
    path = OutputPaths(Path(out)).manifest
    if interrupted_publication(Path(out)):
        raise DatasetError(f"a curate run was killed while publishing into {out}; run curate again to complete it")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read {path}: {error}") from None
    return table.to_pandas(), read_metadata(table.schema)


def read_pairs(out: Path) -> pd.DataFrame:
    """The related pairs of a curated output (`pairs.parquet`); `DatasetError` if missing or unreadable."""
    path = OutputPaths(Path(out)).pairs
    try:
        return pq.read_table(path).to_pandas()
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read {path}: {error} (outputs of Curate before pairs.parquet existed: curate "
                           "again)") from None


def load_split(out: Path, split: str) -> pd.DataFrame:
    """The cleaned split training reads: kept paths and labels (label is null for unlabeled images)."""
    path = OutputPaths(Path(out)).split(split)
    try:
        kept = pd.read_parquet(path, columns=[Col.PATH, Col.LABEL])
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read split {split!r} at {path}: {error}") from None
    return kept.reset_index(drop=True)


def _splits_match(out: Path, manifest: pd.DataFrame) -> ExpectationOutcome:
    """Each splits/<name>.parquet holds exactly the manifest's kept rows of that split (nothing edited since)."""
    differing = []
    for split, rows in manifest.groupby(Col.CURATED_SPLIT):
        expected = sorted(rows.loc[rows[Col.ACTION] == Action.KEEP.value, Col.PATH])
        try:
            found = sorted(load_split(out, split)[Col.PATH])
        except DatasetError:
            found = None
        if found != expected:
            differing.append(split)
    return ExpectationOutcome(
        name="splits_match_manifest",
        description="every cleaned split holds exactly the manifest's kept rows",
        success=not differing,
        observed={"differing_splits": differing},
    )


def check_output(out: Path) -> GateResult:
    """Run the gate's expectations again on a curated output, with the configuration it was curated with."""
    manifest, metadata = read_manifest(out)
    config = parse_config(metadata.get("config", {}), source=f"configuration recorded in {out}")
    result = run_expectations(manifest, read_pairs(out), config)
    outcomes = [*result.outcomes, _splits_match(Path(out), manifest)]
    return GateResult(success=all(o.success for o in outcomes), outcomes=outcomes, raw=result.raw)
