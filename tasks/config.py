"""The one typed configuration model, loaded from `configs/*.yaml` and reused as the flow's parameter.

Every key is validated before any work starts: an unknown key, a wrong type or thresholds in the wrong order
raise `ConfigError` naming the key.
"""

from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.errors import ConfigError
from tasks.schema import Band, Issue

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_FILE = ROOT / "configs" / "default.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SimilarityConfig(_Section):
    """How neighbour pairs are found."""

    nearest_neighbors: int = Field(
        10, ge=2, le=50, description="Neighbours searched per image; also the outlier neighbourhood."
    )
    cluster_similarity: float = Field(
        0.96, ge=0.0, le=1.0, description="Similarity that links images into the `cluster` column's components."
    )
    min_images: int = Field(
        10, ge=2, description="fastdup needs at least this many readable images; fewer skips similarity."
    )


class VerificationConfig(_Section):
    """Which neighbour pairs are verified (the `candidate*` keys), and the thresholds that accept a pair (the
    others); the algorithm's own constants sit with its stages in `tasks.verify` (docs/VERIFICATION.md).

    Defaults measured on RSSCN7 aerial tiles (docs/BENCHMARKS.md)."""

    candidates_per_image: int = Field(
        3, ge=1, le=50, description="Each image's nearest neighbours by embedding and by colour, up to this many "
        "of each, are proposed for verification."
    )
    candidate_similarity: float = Field(
        0.9, ge=0.0, le=1.0, description="A proposal at least this similar by embedding is verified."
    )
    candidate_colour_similarity: float = Field(
        0.85, ge=0.0, le=1.0, description="A proposal at least this similar by colour signature is verified."
    )
    candidates_always: int = Field(
        1, ge=0, le=50, description="Each image's nearest neighbours up to this many, by embedding and by colour, "
        "are verified whatever their similarity."
    )
    candidates_by_part: int = Field(
        2, ge=0, le=50, description="Each image is also verified against this many images with a part (a window "
        "of half their side) whose colours are nearest its own: finds 2x zooms and crops whose colours differ "
        "from the whole original's."
    )
    candidates_by_name: int = Field(
        1, ge=0, le=50, description="Each image is also verified against the images that follow it, up to this "
        "many, in natural order of file name (folders ignored): tiles cut from one scene are usually saved in "
        "sequence, and neighbouring tiles share ground."
    )
    candidates_by_structure: int = Field(
        1, ge=0, le=50, description="Each image is also verified against this many images whose structure "
        "signature (where they are light and dark, under any flip or quarter turn) is nearest its own, when at "
        "least `candidate_structure_similarity` similar: finds copies whose colours or quality changed."
    )
    candidate_structure_similarity: float = Field(
        0.9, ge=0.0, le=1.0, description="A structure neighbour at least this similar (cosine) is verified."
    )

    min_inliers: int = Field(8, ge=3, le=1000, description="Fewest RANSAC inliers to accept a geometric match.")
    min_inlier_ratio: float = Field(
        0.15, ge=0.0, le=1.0, description="Smallest share of one-to-one ratio-test matches that are RANSAC inliers."
    )
    overlap_min_coverage: float = Field(
        0.1, ge=0.0, le=1.0, description="Smallest share of the smaller image inside the shared region for a "
        "keypoint match to be accepted; also how much accepted pairs must place two other files over each other "
        "for that pair to be verified too."
    )
    min_detail_agreement: float = Field(
        0.25, ge=-1.0, le=1.0, description="A match is accepted only if the images' fine detail, aligned by it (for "
        "a keypoint fit also by an affine fit or homography of its matches), correlates at least this well away "
        "from the inliers (median over a grid of cells): a caption or logo shared by different images fits like a "
        "copy, but only on itself. -1 turns the check off."
    )
    min_correlation: float = Field(
        0.7, gt=0.0, le=1.0, description="Normalised cross-correlation of the aligned, high-passed overlap that "
        "accepts a correlation match (or of its median cell, for a placement whose correlation peak is strong)."
    )

    def verdict_settings(self) -> str:
        """The keys that can change a verified pair's verdict, as JSON: every key but the `candidate*` keys, which
        only choose the pairs. The verification cache is keyed by them, so changing a candidate key re-verifies
        nothing verified before."""
        return self.model_dump_json(exclude={name for name in type(self).model_fields if name.startswith("candidate")})


class BandsConfig(_Section):
    """Similarity bands (cosine similarity, exclusive lower bounds), the seed's levels."""

    identical: float = Field(0.990, gt=0.0, le=1.0)
    near_identical: float = Field(0.980, gt=0.0, le=1.0)
    similar: float = Field(0.900, gt=0.0, le=1.0)

    def thresholds(self) -> dict[Band, float]:
        return {Band.IDENTICAL: self.identical, Band.NEAR_IDENTICAL: self.near_identical, Band.SIMILAR: self.similar}

    @model_validator(mode="after")
    def _ordered(self) -> "BandsConfig":
        if not self.identical > self.near_identical > self.similar:
            raise ValueError("bands must satisfy identical > near_identical > similar")
        return self


class QualityConfig(_Section):
    """Image-quality issues, judged against what is normal for this dataset.

    Each threshold is a robust z-score: how many robust standard deviations (1.4826 x median absolute deviation)
    an image lies beyond the dataset's median of a measure. Smooth or dim scenes are normal in aerial data; only
    images far outside the dataset's own spread are flagged.
    """

    blurry_z: float = Field(
        3.0, gt=0.0, description="Blurry: both `sharpness` and log `blur` this far below the dataset's median."
    )
    dark_z: float = Field(4.0, gt=0.0, description="Dark: log brightness this far below the dataset's median.")
    bright_z: float = Field(
        12.0, gt=0.0, description="Bright: log(256 - black_level) this far below the dataset's median (washed out)."
    )
    outlier_z: float = Field(
        5.0, gt=0.0, description="Outlier: `density_ratio` this far below the dataset's median (out of domain)."
    )


class DecisionsConfig(_Section):
    """What happens to files with each issue."""

    drop: frozenset[Issue] = Field(
        frozenset({Issue.CORRUPT, Issue.BLURRY, Issue.DARK, Issue.BRIGHT}),
        description="Issues whose files are dropped (duplicates other than the kept one are always dropped).",
    )
    review: frozenset[Issue] = Field(
        frozenset({Issue.OUTLIER, Issue.LABEL_CONFLICT}), description="Issues whose files go to a person."
    )
    evaluation_splits: tuple[str, ...] = Field(
        ("test", "val", "valid", "validation"),
        description="Evaluation splits, most preferred first: their copy of a duplicate is kept over others, and a "
        "file of any other (training) split that shares ground with one of their kept files is a leak.",
    )
    duplicate_share: float = Field(
        0.75, gt=0.0, le=1.0, description="Two related images are duplicates when the ground they share covers at "
        "least this share of each; otherwise they overlap. Of a set of duplicates one file is kept; overlapping "
        "files of one split are all kept."
    )
    split_leak: Literal["drop", "review", "reassign"] = Field(
        "drop", description="What happens to a training file that shares ground with a kept evaluation file: "
        "dropped, sent to review, or (reassign) every set of files that share ground moved wholly into one split."
    )
    fixed_splits: tuple[str, ...] = Field(
        ("test",), description="Splits whose membership reassign never changes: other files that share their "
        "ground are dropped as leaks."
    )
    overrides: Path | None = Field(
        None, description="A reviewer's CSV (path,action) or YAML (path: action) file of keep/drop decisions."
    )

    @model_validator(mode="after")
    def _disjoint(self) -> "DecisionsConfig":
        if Issue.CORRUPT not in self.drop:
            raise ValueError("corrupt files cannot be kept: `corrupt` must stay in decisions.drop")
        if both := self.drop & self.review:
            raise ValueError(f"issues both dropped and reviewed: {sorted(both)}")
        if Issue.SPLIT_LEAK in self.drop | self.review:
            # It flags both files of a relation across splits; only the training side is to be resolved.
            raise ValueError("split_leak cannot be listed in decisions.drop or decisions.review: set "
                             "decisions.split_leak (drop or review) instead")
        return self


class GateConfig(_Section):
    """The quality gate's limits."""

    max_drop_share: float = Field(0.5, ge=0.0, le=1.0, description="Largest share of files that may be dropped.")
    require_all_labels: bool = Field(
        True, description="Every label of a labeled split must still have a kept image after curation."
    )


class RunnerConfig(_Section):
    """Where the per-image work runs: hashing, decoding, embedding and verification, cut into chunks."""

    kind: Literal["threads", "processes", "dask"] = Field(
        "threads", description="threads or processes on this machine, or a Dask cluster (through prefect-dask)."
    )
    workers: int | None = Field(
        None, ge=1, description="Chunks run at once, or workers of the local Dask cluster; default: one per core."
    )
    dask_address: str | None = Field(
        None, description="Scheduler address of an existing Dask cluster (e.g. tcp://10.0.0.5:8786); unset: a "
        "local cluster is started for the run. Its workers must see the images and the output folder at the "
        "same paths."
    )

    @model_validator(mode="after")
    def _address_needs_dask(self) -> "RunnerConfig":
        if self.dask_address and self.kind != "dask":
            raise ValueError("dask_address needs kind: dask")
        return self


class ExpertQualityConfig(_Section):
    """The quality levels' second measures, set relative to the first ones on RSSCN7 (docs/BENCHMARKS.md)."""

    blurry_fine_detail_z: float = Field(
        4.0, gt=0.0, description="Blurry too: `fine_detail` this far below the dataset's median (blurred, or smeared "
        "in one direction)."
    )
    bright_mean_z: float = Field(
        6.0, gt=0.0, description="Bright too: log(256 - brightness) this far below the dataset's median (over-exposed)."
    )


class ExpertRunnerConfig(_Section):
    """How the per-image work is cut into chunks and how much each process keeps between them."""

    chunk_size: int = Field(
        5000, ge=1, description="Images per chunk of hashing, decoding and embedding; candidate pairs per chunk "
        "of verification, taken in an order that keeps partners together."
    )
    feature_cache_mb: int = Field(
        384, ge=0, description="Megabytes of verification features (about 46 KB an image) that each process keeps "
        "for the chunks that follow: chunks are cut by pairs, and an image's pairs can fall in several."
    )


class ExpertConfig(_Section):
    """Algorithm internals with measured defaults: not in `configs/default.yaml`, documented in
    docs/CONFIGURATION.md. A run that changes them is no longer the run the benchmarks measured."""

    similarity: SimilarityConfig = SimilarityConfig()
    verification: VerificationConfig = VerificationConfig()
    bands: BandsConfig = BandsConfig()
    quality: ExpertQualityConfig = ExpertQualityConfig()
    runner: ExpertRunnerConfig = ExpertRunnerConfig()


class CurateConfig(_Section):
    """Curate's whole configuration."""

    dataset_name: str | None = Field(None, description="Names the default output folder; derived if unset.")
    extensions: tuple[str, ...] | None = Field(
        None, description="File suffixes (case-insensitive) treated as images; other files are counted, not "
        "curated. Unset: every raster format Pillow opens (`tasks.images.image_suffixes`).",
    )
    cache_dir: Path | None = Field(
        Path("data/cache"),
        description="Embeddings and verification results cached by content (sha256) and by engine version or "
        "settings; relative to the project folder; null: no cache.",
    )
    quality: QualityConfig = QualityConfig()
    decisions: DecisionsConfig = DecisionsConfig()
    gate: GateConfig = GateConfig()
    runner: RunnerConfig = RunnerConfig()
    expert: ExpertConfig = ExpertConfig()


def _describe(error: pydantic.ValidationError) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "configuration"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{key}: {message}")
    return "; ".join(problems)


def parse_config(data: dict[str, Any], source: str = "configuration") -> CurateConfig:
    """Validate a configuration mapping, raising `ConfigError` that names each bad key."""
    try:
        return CurateConfig.model_validate(data)
    except pydantic.ValidationError as error:
        raise ConfigError(f"invalid {source}: {_describe(error)}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML configuration file into a mapping (empty file = defaults)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"configuration file {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def apply_assignments(data: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply `--set KEY=VALUE` assignments (dotted keys, YAML values) to a configuration mapping; return a new
    mapping."""
    merged: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    for assignment in assignments:
        key, sep, raw_value = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {assignment!r}")
        try:
            value = yaml.safe_load(raw_value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: value {raw_value!r} is not valid YAML") from None
        node = merged
        *parents, leaf = key.strip().split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
            node = child
        node[leaf] = value
    return merged


def load_config(path: Path | None = None, assignments: list[str] | None = None) -> CurateConfig:
    """Load the configuration: a YAML file (default `configs/default.yaml`) plus `--set` assignments."""
    source = path or DEFAULT_CONFIG_FILE
    data = apply_assignments(read_config_file(source), assignments or [])
    return parse_config(data, source=f"configuration ({source})")
