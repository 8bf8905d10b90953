"""Configuration: defaults, every bound, every error message names its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dispenser.config import (
    RETENTION_CEILING_S,
    Settings,
    StoreSettings,
    describe_settings,
    load_settings,
    settings_from_mapping,
)
from dispenser.errors import ConfigError


def test_defaults_are_the_documented_laptop_defaults() -> None:
    s = Settings()
    assert s.store.deny_window_s == 540.0
    assert s.store.retention_s == 600.0
    assert s.dispense.ribbon_mm == 600
    assert s.vision.hold_still_s == 3.0
    assert s.serial.port == "sim"
    assert (s.display.kind, s.display.language, s.display.preview) == (
        "terminal", "zh+en", True)


def test_a_boolean_setting_takes_true_or_false() -> None:
    assert settings_from_mapping({"display": {"preview": False}}).display.preview is False


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().store.retention_s = 900  # type: ignore[misc]


def test_example_config_loads_and_names_every_setting(repo_root: Path) -> None:
    path = repo_root / "config" / "dispenser.example.toml"
    assert load_settings(path) == Settings()
    text = path.read_text()
    for key, *_ in describe_settings():
        assert f"{key.split('.')[1]} =" in text, f"example config does not show {key}"


def test_none_means_defaults() -> None:
    assert load_settings(None) == Settings()


def _error(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_retention_can_never_exceed_the_ceiling() -> None:
    msg = _error({"store": {"retention_s": RETENTION_CEILING_S + 0.001}})
    assert msg == ("config: store.retention_s = 600.001 is out of range "
                   "(allowed 0 < x <= 600)")


def test_deny_window_may_not_outlast_retention() -> None:
    msg = _error({"store": {"deny_window_s": 300, "retention_s": 200}})
    assert "store.deny_window_s = 300 must not exceed store.retention_s = 200" in msg


def test_equal_deny_window_and_retention_are_allowed() -> None:
    s = settings_from_mapping({"store": {"deny_window_s": 120, "retention_s": 120}})
    assert s.store.deny_window_s == s.store.retention_s == 120.0


def test_shorter_retention_is_allowed() -> None:
    s = settings_from_mapping({"store": {"deny_window_s": 60, "retention_s": 90}})
    assert s.store.retention_s == 90.0


def test_ceiling_also_holds_for_settings_built_in_code() -> None:
    with pytest.raises(ConfigError, match=r"store\.retention_s"):
        StoreSettings(retention_s=601.0)
    with pytest.raises(ConfigError, match=r"store\.deny_window_s"):
        Settings(store=StoreSettings(deny_window_s=600.0, retention_s=500.0))


_BOUNDED = [(key, rng) for key, _d, rng, _doc in describe_settings() if "x" in rng]


@pytest.mark.parametrize(("key", "allowed"), _BOUNDED)
def test_every_numeric_bound_is_enforced_and_named(key: str, allowed: str) -> None:
    section, name = key.split(".")
    field = next(f for f in dataclasses.fields(getattr(Settings(), section))
                 if f.name == name)
    lo, hi, lo_open = field.metadata["lo"], field.metadata["hi"], field.metadata["lo_open"]
    hi_open = field.metadata["hi_open"]
    kind = field.metadata["kind"]
    if lo is not None:
        below = lo if lo_open else (lo - 1 if kind is int else lo - 1e-3)
        msg = _error({section: {name: kind(below)}})
        assert msg.startswith(f"config: {key} = ") and f"(allowed {allowed})" in msg
    if hi is not None:
        above = hi if hi_open else (hi + 1 if kind is int else hi + 1e-3)
        msg = _error({section: {name: kind(above)}})
        assert msg.startswith(f"config: {key} = ") and f"(allowed {allowed})" in msg
    edge = {} if lo is None or lo_open else {name: kind(lo)}
    if section == "store" and name == "retention_s" and edge:
        edge["deny_window_s"] = kind(lo)
    settings_from_mapping({section: edge})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"store": {"nonsense": 1}}, "config: unknown key store.nonsense (known: "),
        ({"nosuch": {}}, "config: unknown section [nosuch] (known: "),
        ({"store": 5}, "config: [store] must be a table, not int"),
        ({"store": {"capacity": "big"}}, "config: store.capacity = 'big' has the wrong type"),
        ({"store": {"capacity": 2.5}}, "config: store.capacity = 2.5 has the wrong type"),
        ({"store": {"capacity": True}}, "config: store.capacity = True has the wrong type"),
        ({"match": {"threshold": float("nan")}}, "config: match.threshold = nan must be"),
        ({"display": {"language": "fr"}}, "config: display.language = 'fr' is not allowed"),
        ({"display": {"kind": "hdmi"}}, "config: display.kind = 'hdmi' is not allowed "
                                        "(allowed one of 'terminal', 'framebuffer', 'window')"),
        ({"display": {"rotation": 45}}, "config: display.rotation = 45 is not allowed "
                                        "(allowed one of 0, 90, 180, 270)"),
        ({"display": {"size": "big"}}, "config: display.size = 'big' is not a size"),
        ({"display": {"size": "800x9"}}, "config: display.size = '800x9' is not a size"),
        ({"display": {"preview": "yes"}}, "config: display.preview = 'yes' has the wrong "
                                          "type (expected true or false)"),
        ({"display": {"preview": 1}}, "config: display.preview = 1 has the wrong type"),
        ({"log": {"level": "LOUD"}}, "config: log.level = 'LOUD' is not allowed"),
    ],
)
def test_bad_values_are_refused_with_one_line(data: dict[str, object], expected: str) -> None:
    assert _error(data).startswith(expected)


@pytest.mark.parametrize("value", [-1.0, 0.0, 1.0])
def test_a_match_threshold_that_is_no_usable_cosine_is_refused(value: float) -> None:
    """0 and below would refuse everyone, 1 nobody. (An override below the embedder card's
    floor, e.g. a typo such as 0.093, is refused when the rule is built: tests/store.)"""
    assert _error({"match": {"threshold": value}}) == (
        f"config: match.threshold = {value!r} is out of range (allowed 0 < x < 1)")


@pytest.mark.parametrize("value", [0.4, 0.8, 0.88, 0.93, 0.999])
def test_fixed_match_thresholds_are_accepted(value: float) -> None:
    assert settings_from_mapping({"match": {"threshold": value}}).match.threshold == value


def test_thresholds_are_derived_unless_set() -> None:
    m = Settings().match
    assert (m.threshold, m.likely_threshold) == (None, None)
    assert (m.max_false_refusal, m.max_false_short) == (0.001, 0.02)
    assert Settings().dispense.short_ribbon_mm == 300
    assert settings_from_mapping({"match": {"likely_threshold": 0.5}}).match.likely_threshold \
        == 0.5


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"match": {"max_false_refusal": 0.01, "max_false_short": 0.005}},
         "config: match.max_false_short = 0.005 must be at least match.max_false_refusal "
         "= 0.01"),
        ({"match": {"threshold": 0.9, "likely_threshold": 0.95}},
         "config: match.likely_threshold = 0.95 must not exceed match.threshold = 0.9"),
        ({"dispense": {"short_ribbon_mm": 600}},
         "config: dispense.short_ribbon_mm = 600 must be shorter than dispense.ribbon_mm "
         "= 600"),
        ({"match": {"threshold": "0.9"}},
         "config: match.threshold = '0.9' has the wrong type (expected float)"),
        ({"vision": {"embedder": "facenet"}},
         "config: vision.embedder = 'facenet' is not allowed (allowed one of 'sface', 'dlib')"),
    ],
)
def test_rule_settings_that_contradict_each_other_are_refused(data: dict[str, object],
                                                              expected: str) -> None:
    assert _error(data) == expected


def test_a_short_ribbon_below_a_longer_normal_ribbon_is_allowed() -> None:
    s = settings_from_mapping({"dispense": {"ribbon_mm": 800, "short_ribbon_mm": 700}})
    assert (s.dispense.ribbon_mm, s.dispense.short_ribbon_mm) == (800, 700)


def test_int_is_accepted_where_float_expected() -> None:
    s = settings_from_mapping({"store": {"sweep_period_s": 1}})
    assert isinstance(s.store.sweep_period_s, float)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[store\n", "is not valid TOML"),
        (b"\xff\xfe[store]", "not UTF-8 text"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "bad.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        load_settings(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path)
