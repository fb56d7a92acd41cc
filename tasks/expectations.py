"""The quality gate: a Great Expectations suite built from the configuration and run over the manifest.

Every expectation is evaluated (nothing stops at the first failure); the caller decides what a failure means.
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.config import CurateConfig
from tasks.schema import Action, Col, Issue, PairCol, issue_flags

SPLIT_LABEL = "split_label"  # "curated split/label" of labeled rows, for the per-split label check
GIVEN_SPLIT_LABEL = "given_split_label"  # "split/label" as given: the labels each split must keep
HAS_LABEL_CONFLICT = "has_label_conflict"
SHARES_KEPT_EVALUATION_GROUND = "shares_kept_evaluation_ground"


@dataclass(frozen=True)
class ExpectationOutcome:
    name: str  # short, stable identifier used in messages
    description: str
    success: bool
    observed: Any  # what was measured (counts, share, missing values), JSON-serialisable


@dataclass(frozen=True)
class GateResult:
    success: bool
    outcomes: list[ExpectationOutcome]
    raw: dict[str, Any]  # Great Expectations' own validation result, as JSON

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.success]

    def message(self) -> str:
        """One line naming the failed expectations."""
        if self.success:
            return f"quality gate passed ({len(self.outcomes)} expectations)"
        names = ", ".join(outcome.name for outcome in self.failed)
        return f"quality gate failed: {len(self.failed)} of {len(self.outcomes)} expectations ({names})"

    def to_json(self) -> dict[str, Any]:
        return {"success": self.success, "expectations": [asdict(outcome) for outcome in self.outcomes]}


def shares_kept_evaluation_ground(manifest: pd.DataFrame, pairs: pd.DataFrame, config: CurateConfig) -> pd.Series:
    """Whether each row is a kept file related (any relation in `pairs`, by path) to a kept file of another
    curated split that is an evaluation split: a leak that survived. Under `decisions.split_leak: reassign`, no
    file of any curated split may share ground with an evaluation split's; otherwise only training files are
    checked (two evaluation splits that share ground are reported, not resolved)."""
    by_path = manifest.drop_duplicates(Col.PATH).set_index(Col.PATH)
    split = by_path[Col.CURATED_SPLIT]
    evaluation = split.isin(config.decisions.evaluation_splits)
    kept = by_path[Col.ACTION] == Action.KEEP.value
    any_split = config.decisions.split_leak == "reassign"
    leaking = []
    for this, other in ((PairCol.PATH_A, PairCol.PATH_B), (PairCol.PATH_B, PairCol.PATH_A)):
        ends = [pairs[this].to_numpy(), pairs[other].to_numpy()]
        kept_this, kept_other = (kept.reindex(end).fillna(False).to_numpy(dtype=bool) for end in ends)
        this_evaluated, evaluated = (evaluation.reindex(end).fillna(False).to_numpy(dtype=bool) for end in ends)
        apart = split.reindex(ends[0]).to_numpy() != split.reindex(ends[1]).to_numpy()
        exposed = apart if any_split else ~this_evaluated
        leaking.append(ends[0][kept_this & kept_other & evaluated & apart & exposed])
    return manifest[Col.PATH].isin(np.concatenate(leaking))


def gate_frame(manifest: pd.DataFrame, pairs: pd.DataFrame, config: CurateConfig) -> pd.DataFrame:
    """The manifest's columns the expectations read, with list and pair values flattened to scalars."""
    labeled = manifest[Col.LABEL].notna()
    return pd.DataFrame(
        {
            Col.PATH: manifest[Col.PATH].astype(str),
            Col.ACTION: manifest[Col.ACTION].astype(str),
            Col.VALID: manifest[Col.VALID].astype(bool),
            Col.SHA256: manifest[Col.SHA256].astype(object).where(manifest[Col.SHA256].notna(), None),
            Col.DUP_GROUP: manifest[Col.DUP_GROUP].astype("float64"),
            HAS_LABEL_CONFLICT: issue_flags(manifest[Col.ISSUES])[Issue.LABEL_CONFLICT.value],
            SPLIT_LABEL: (manifest[Col.CURATED_SPLIT].astype(str) + "/" + manifest[Col.LABEL].astype(str)
                          ).where(labeled),
            GIVEN_SPLIT_LABEL: (manifest[Col.SPLIT].astype(str) + "/" + manifest[Col.LABEL].astype(str)).where(labeled),
            SHARES_KEPT_EVALUATION_GROUND: shares_kept_evaluation_ground(manifest, pairs, config),
        }
    )


def _suite(config: CurateConfig, frame: pd.DataFrame) -> list[tuple[str, str, Any]]:
    """(name, description, expectation) triples: what the gate checks."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    kept = Column(Col.ACTION) == Action.KEEP.value
    actions = [action.value for action in Action]
    suite: list[tuple[str, str, Any]] = [
        ("paths_unique", "every file has exactly one row", gxe.ExpectColumnValuesToBeUnique(column=Col.PATH)),
        (
            "actions_known",
            f"action is one of {actions}",
            gxe.ExpectColumnValuesToBeInSet(column=Col.ACTION, value_set=actions),
        ),
        (
            "kept_bytes_unique",
            "no two kept files have the same bytes (sha256)",
            gxe.ExpectColumnValuesToBeUnique(column=Col.SHA256, row_condition=kept),
        ),
        (
            "kept_one_per_duplicate_set",
            "each duplicate set keeps at most one file, so no two kept files are duplicates",
            gxe.ExpectColumnValuesToBeUnique(column=Col.DUP_GROUP, row_condition=kept),
        ),
        (
            "kept_readable",
            "no kept file is corrupt",
            gxe.ExpectColumnValuesToBeInSet(column=Col.VALID, value_set=[True], row_condition=kept),
        ),
        (
            "kept_no_label_conflict",
            "no kept file is in a duplicate set with conflicting labels",
            gxe.ExpectColumnValuesToBeInSet(column=HAS_LABEL_CONFLICT, value_set=[False], row_condition=kept),
        ),
        (
            "drop_share_within_limit",
            f"at most {config.gate.max_drop_share:.0%} of files are dropped",
            gxe.ExpectColumnValuesToNotBeInSet(
                column=Col.ACTION, value_set=[Action.DROP.value], mostly=1.0 - config.gate.max_drop_share
            ),
        ),
    ]
    if config.decisions.split_leak != Action.REVIEW.value:
        suite.append(
            (
                "kept_training_shares_no_evaluation_ground",
                "no kept file of a training split (with reassign: of any other curated split) shares ground with a "
                "kept file of an evaluation split",
                gxe.ExpectColumnValuesToBeInSet(column=SHARES_KEPT_EVALUATION_GROUND, value_set=[False],
                                                row_condition=kept),
            )
        )
    expected_labels = sorted(frame[GIVEN_SPLIT_LABEL].dropna().unique())
    if config.gate.require_all_labels and expected_labels:
        suite.append(
            (
                "labels_kept",
                "every label of a labeled split keeps at least one file",
                gxe.ExpectColumnDistinctValuesToContainSet(
                    column=SPLIT_LABEL, value_set=expected_labels, row_condition=kept
                ),
            )
        )
    return suite


def _observed(result: dict[str, Any]) -> Any:
    if "partial_missing_list" in result:
        return {"missing": result["partial_missing_list"]}
    for key in ("observed_value", "unexpected_count"):
        if key in result:
            observed = result[key]
            if key == "unexpected_count" and result.get("partial_unexpected_list"):
                return {"unexpected_count": observed, "examples": result["partial_unexpected_list"][:5]}
            return observed
    return None


def run_expectations(
    manifest: pd.DataFrame, pairs: pd.DataFrame, config: CurateConfig, docs_dir: Path | None = None
) -> GateResult:
    """Validate the manifest and its related pairs (by path, as `pairs.parquet` holds them) against the gate's
    suite; write Great Expectations' Data Docs to `docs_dir`."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    frame = gate_frame(manifest, pairs, config)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("curate").add_dataframe_asset("manifest")
    batch = asset.add_batch_definition_whole_dataframe("manifest")
    suite_items = _suite(config, frame)
    suite = context.suites.add(gx.ExpectationSuite(name="curate_gate"))
    names = {}
    for name, description, expectation in suite_items:
        names[suite.add_expectation(expectation).id] = (name, description)
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="gate", data=batch, suite=suite))
    actions = []
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="curate",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["curate"]))
    checkpoint = context.checkpoints.add(gx.Checkpoint(name="gate", validation_definitions=[validation], actions=actions))
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    (validation_result,) = run.run_results.values()
    outcomes = []
    for result in validation_result.results:
        name, description = names[result.expectation_config.id]
        outcomes.append(
            ExpectationOutcome(
                name=name, description=description, success=bool(result.success), observed=_observed(result.result)
            )
        )
    outcomes.sort(key=lambda outcome: [item[0] for item in suite_items].index(outcome.name))
    return GateResult(
        success=all(outcome.success for outcome in outcomes), outcomes=outcomes, raw=validation_result.to_json_dict()
    )
