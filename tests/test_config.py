import pytest
import yaml

from tasks.config import DEFAULT_CONFIG_FILE, CurateConfig, apply_assignments, load_config, parse_config
from tasks.errors import ConfigError
from tasks.schema import Issue


def test_default_file_shows_every_user_key_at_its_default_and_no_expert_key():
    assert load_config() == CurateConfig()
    shown = yaml.safe_load(DEFAULT_CONFIG_FILE.read_text())
    user_sections = set(CurateConfig.model_fields) - {"expert"}
    assert set(shown) == user_sections
    leaves = 0
    for section in user_sections:
        if isinstance(shown[section], dict):
            assert set(shown[section]) == set(CurateConfig.model_fields[section].annotation.model_fields), section
            leaves += len(shown[section])
        else:
            leaves += 1
    assert leaves <= 20


def test_expert_keys_are_set_like_any_other():
    config = load_config(assignments=["expert.verification.min_correlation=0.75", "expert.runner.chunk_size=100"])
    assert config.expert.verification.min_correlation == 0.75 and config.expert.runner.chunk_size == 100
    assert config.quality == CurateConfig().quality


def test_overrides_are_dotted_and_typed():
    config = parse_config(apply_assignments({}, ["quality.dark_z=2.5", "decisions.drop=[corrupt]"]))
    assert config.quality.dark_z == 2.5
    assert config.decisions.drop == frozenset({Issue.CORRUPT})


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["quality.darkness=3"], "quality.darkness"),
        (["bogus=1"], "bogus"),
        (["expert.similarity.nearest_neighbors=many"], "expert.similarity.nearest_neighbors"),
        (["expert.bands.similar=0.995"], "identical > near_identical > similar"),
        (["gate.max_drop_share=1.5"], "gate.max_drop_share"),
        (["decisions.drop=[blurry]"], "corrupt"),
        (["decisions.review=[sparkly]"], "decisions.review"),
        (["quality"], "KEY=VALUE"),
    ],
)
def test_bad_configuration_names_the_key(overrides, named):
    with pytest.raises(ConfigError) as error:
        load_config(assignments=overrides)
    assert named in str(error.value)


def test_config_is_frozen():
    with pytest.raises(Exception):
        CurateConfig().expert.bands.identical = 0.5  # type: ignore[misc]


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("bands: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
