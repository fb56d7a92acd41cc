import pytest
import yaml

from tasks.config import DEFAULT_CONFIG_FILE, CurateConfig, apply_overrides, load_config, parse_config
from tasks.errors import ConfigError
from tasks.schema import Issue


def test_default_file_matches_model_defaults():
    # configs/default.yaml documents every key; it must not drift from the model's own defaults.
    assert load_config() == CurateConfig()
    documented = yaml.safe_load(DEFAULT_CONFIG_FILE.read_text())
    assert set(documented) == set(CurateConfig.model_fields)
    for section, model in CurateConfig.model_fields.items():
        if isinstance(documented[section], dict):
            assert set(documented[section]) == set(model.annotation.model_fields), section


def test_overrides_are_dotted_and_typed():
    config = parse_config(apply_overrides({}, ["quality.dark_z=2.5", "decisions.drop=[corrupt]"]))
    assert config.quality.dark_z == 2.5
    assert config.decisions.drop == frozenset({Issue.CORRUPT})


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["quality.darkness=3"], "quality.darkness"),
        (["bogus=1"], "bogus"),
        (["similarity.nearest_neighbors=many"], "similarity.nearest_neighbors"),
        (["bands.similar=0.995"], "identical > near_identical > similar"),
        (["gate.max_drop_share=1.5"], "gate.max_drop_share"),
        (["decisions.drop=[blurry]"], "corrupt"),
        (["decisions.review=[sparkly]"], "decisions.review"),
        (["quality"], "KEY=VALUE"),
    ],
)
def test_bad_configuration_names_the_key(overrides, named):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=overrides)
    assert named in str(error.value)


def test_config_is_frozen():
    with pytest.raises(Exception):
        CurateConfig().bands.identical = 0.5  # type: ignore[misc]


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("bands: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
