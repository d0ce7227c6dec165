from __future__ import annotations

import os
from pathlib import Path

import pytest

from rules.config import DEFAULT_FILE, DEFAULTS, ConfigError, ConfigWatcher, RuleConfig
from whistle.domain import DeviceType


def test_the_shipped_file_matches_the_built_in_defaults() -> None:
    assert RuleConfig.load(DEFAULT_FILE).params() == DEFAULTS.params()


def test_unknown_rule_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"rules\.water\.leak: unknown rule"):
        RuleConfig({"rules": {"water.leak": {}}})


def test_misspelt_parameter_is_an_error_with_its_path() -> None:
    doc = {"overrides": [{"street": "RJ", "rules": {"water.continuous_flow": {"min_span": 60}}}]}
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.rules\.water\.continuous_flow\.min_span: Extra inputs"):
        RuleConfig(doc)


def test_out_of_range_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"rules\.ebike\.indoor_charging\.min_step_w"):
        RuleConfig({"rules": {"ebike.indoor_charging": {"min_step_w": -5}}})
    with pytest.raises(ConfigError, match="max_step_w must be above min_step_w"):
        RuleConfig({"rules": {"ebike.indoor_charging": {"min_step_w": 700}}})


def test_unknown_override_scope_is_an_error() -> None:
    with pytest.raises(ConfigError, match="building"):
        RuleConfig({"overrides": [{"building": "B1", "rules": {}}]})


def test_overrides_apply_from_least_to_most_specific() -> None:
    cfg = RuleConfig(
        {
            "rules": {"water.continuous_flow": {"min_span_s": 7000}},
            "overrides": [
                {
                    "grid": "RJ-G1",
                    "rules": {"water.continuous_flow": {"min_span_s": 9000}},
                },  # most specific, listed first
                {"street": "RJ", "rules": {"water.continuous_flow": {"min_span_s": 8000, "min_lpm": 2}}},
                {"device_type": "water", "rules": {"device.offline": {"intervals_s": {"water": 1800}}}},
            ],
        }
    )
    micro = cfg.params(street="RJ", grids=("RJ-G1-M01", "RJ-G1"), device_type=DeviceType.WATER)
    assert micro.continuous_flow.min_span_s == 9000  # the parent grid's override reaches its micro-grid
    assert micro.continuous_flow.min_lpm == 2  # merged from the street layer
    assert micro.offline.interval_ms(DeviceType.WATER) == 1_800_000
    assert micro.offline.interval_ms(DeviceType.POWER) == 2_700_000  # untouched keys keep their defaults
    other_street = cfg.params(street="XX", grids=("XX-G1",), device_type=DeviceType.POWER)
    assert other_street.continuous_flow.min_span_s == 7000
    assert other_street.offline.interval_ms(DeviceType.WATER) == 2_700_000


def test_bad_yaml_and_wrong_top_level_are_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RuleConfig.load(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        RuleConfig.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        RuleConfig.load(tmp_path / "missing.yaml")


def test_watcher_reloads_on_change_and_keeps_the_last_good_config(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  water.continuous_flow: {min_span_s: 3600}\n")
    w = ConfigWatcher(path)
    assert w.config.params().continuous_flow.min_span_s == 3600
    assert w.poll() is False
    path.write_text("rules:\n  water.continuous_flow: {min_span_s: 5400}\n")
    os.utime(path, ns=(1, 10**18))  # a new mtime even on coarse file systems
    assert w.poll() is True and w.config.params().continuous_flow.min_span_s == 5400
    path.write_text("rules:\n  water.continuous_flow: {min_span_s: -1}\n")
    os.utime(path, ns=(1, 2 * 10**18))
    assert w.poll() is False
    assert w.errors == 1 and w.last_error is not None and "min_span_s" in w.last_error
    assert w.config.params().continuous_flow.min_span_s == 5400
