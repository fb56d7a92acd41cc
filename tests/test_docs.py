"""Drift tests: the README documents every relation, issue and command-line option; docs/ every configuration key,
manifest and pairs column and check; the README stays short enough for a newcomer."""

from pathlib import Path

import pytest

from flows.curate import build_parser
from tasks.config import CurateConfig
from tasks.schema import MANIFEST_COLUMNS, PAIRS_COLUMNS, Check, Issue, Relation

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CONFIGURATION = (Path(__file__).resolve().parents[1] / "docs" / "CONFIGURATION.md").read_text()
OUTPUTS = (Path(__file__).resolve().parents[1] / "docs" / "OUTPUTS.md").read_text()


def config_keys(model=CurateConfig, prefix=""):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, CurateConfig.__mro__[1]):
            yield from config_keys(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


@pytest.mark.parametrize("key", list(config_keys()))
def test_every_configuration_key_is_documented(key):
    assert f"| `{key}` |" in CONFIGURATION


@pytest.mark.parametrize("column", MANIFEST_COLUMNS)
def test_every_manifest_column_is_documented(column):
    assert f"`{column}`" in OUTPUTS.split("## Manifest columns")[1].split("## Pairs columns")[0]


@pytest.mark.parametrize("column", PAIRS_COLUMNS)
def test_every_pairs_column_is_documented(column):
    assert f"`{column}`" in OUTPUTS.split("## Pairs columns")[1]


@pytest.mark.parametrize("relation", [relation.value for relation in Relation])
def test_every_relation_is_documented(relation):
    assert f"| `{relation}` |" in README


@pytest.mark.parametrize("check", [check.value for check in Check])
def test_every_check_is_documented(check):
    assert f"`{check}`" in OUTPUTS.split("## Pairs columns")[1]


@pytest.mark.parametrize("issue", [issue.value for issue in Issue])
def test_every_issue_is_documented(issue):
    assert f"`{issue}`" in README


@pytest.mark.parametrize("option", [a.option_strings[0] for a in build_parser()._actions if a.option_strings[0] != "-h"])
def test_every_command_line_option_is_documented(option):
    assert f"`{option}" in README


def test_the_readme_is_short_enough_for_a_newcomer():
    assert len(README) <= 15_000
