"""Config parsing: CLI strings to declared types, strictly; every source; every problem at once."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pytest

from modelport.deployers.config import (
    NoConfig,
    Sources,
    build_config,
    config_to_dict,
    convert,
    env_var_name,
    fields_of,
    parse_assignments,
    read_config_file,
    type_name,
)
from modelport.errors import EXIT_USAGE, ConfigError


class Tier(enum.Enum):
    SMALL = "small"
    LARGE = "large"


@dataclass(frozen=True)
class CloudConfig:
    """A config like a cloud target's.

    Attributes:
        role: the role the service assumes,
            written over two lines.
    """

    region: str = field(metadata={"help": "Region to deploy to."})
    role: str = ""
    instance_count: int = field(default=1, metadata={"help": "Instances."})
    synchronous: bool = True
    timeout: float = 60.0
    tags: dict[str, str] = field(default_factory=dict)
    subnets: tuple[str, ...] = ()
    memory_mb: Optional[int] = None  # noqa: UP045 - the old spelling must work too
    tier: Tier = Tier.SMALL
    mode: Literal["realtime", "serverless"] = "realtime"
    output: Path | None = None


def build(**sources: Any) -> CloudConfig:
    result: CloudConfig = build_config(CloudConfig, "my-cloud", Sources(**sources))
    return result


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("True", True),
        ("yes", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("FALSE", False),
        ("no", False),
        ("off", False),
        ("0", False),
    ],
)
def test_booleans_mean_what_they_say(text: str, value: bool) -> None:
    # MLflow's SageMaker parser reads "true" as False; here every spelling is what it says.
    assert build(cli={"region": "r", "synchronous": text}).synchronous is value


@pytest.mark.parametrize("text", ["maybe", "", "2", "tru"])
def test_anything_else_is_not_a_boolean(text: str) -> None:
    with pytest.raises(ConfigError, match=r"synchronous \(from -C\): expected a boolean"):
        build(cli={"region": "r", "synchronous": text})


def test_numbers_are_parsed_and_never_truncated() -> None:
    config = build(cli={"region": "r", "instance_count": " 3 ", "timeout": "2.5"})
    assert (config.instance_count, config.timeout) == (3, 2.5)
    assert build(cli={"region": "r", "timeout": "7"}).timeout == 7.0
    with pytest.raises(ConfigError, match=r"instance_count .*expected an integer, got '1.5'"):
        build(cli={"region": "r", "instance_count": "1.5"})
    with pytest.raises(ConfigError, match=r"timeout .*expected a number"):
        build(cli={"region": "r", "timeout": "soon"})


def test_json_for_dicts_and_lists() -> None:
    config = build(cli={"region": "r", "tags": '{"team": "ml"}', "subnets": '["a", "b"]'})
    assert config.tags == {"team": "ml"}
    assert config.subnets == ("a", "b")
    with pytest.raises(ConfigError, match=r"tags .*JSON object.*not valid JSON"):
        build(cli={"region": "r", "tags": "team=ml"})
    with pytest.raises(ConfigError, match=r"subnets .*expected a JSON array"):
        build(cli={"region": "r", "subnets": '{"a": 1}'})


def test_optional_enum_literal_and_path() -> None:
    config = build(
        cli={
            "region": "r",
            "memory_mb": "512",
            "tier": "large",
            "mode": "serverless",
            "output": "~/o",
        }
    )
    assert config.memory_mb == 512
    assert config.tier is Tier.LARGE
    assert config.mode == "serverless"
    assert config.output == Path("~/o").expanduser()
    assert build(cli={"region": "r", "memory_mb": "none"}).memory_mb is None
    with pytest.raises(ConfigError, match=r"tier .*one of small \| large"):
        build(cli={"region": "r", "tier": "huge"})
    with pytest.raises(ConfigError, match=r'mode .*one of "realtime" \| "serverless"'):
        build(cli={"region": "r", "mode": "batch"})


def test_typed_file_values_are_checked_too() -> None:
    # A TOML file gives real types; a bool is not an int, a string is not a bool.
    assert (
        build(file={"region": "r", "instance_count": 4, "synchronous": False}).instance_count == 4
    )
    with pytest.raises(ConfigError) as info:
        build(file={"region": "r", "instance_count": True, "synchronous": "sometimes"})
    assert len(info.value.problems) == 2


@pytest.mark.parametrize(
    ("tp", "value", "expected"),
    [
        (int | str, "3", 3),
        (int | str, "abc", "abc"),
        (list[int], "[1, 2]", [1, 2]),
        (tuple[int, str], '[1, "a"]', (1, "a")),
        (Any, '{"a": 1}', {"a": 1}),
        (Any, "plain", "plain"),
        (str, 5, "5"),
    ],
)
def test_convert(tp: Any, value: Any, expected: Any) -> None:
    assert convert(value, tp) == expected


def test_convert_refuses_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="2 items"):
        convert("[1]", tuple[int, str])
    with pytest.raises(ValueError, match="expected a string"):
        convert(True, str)


# --- keys and sources -----------------------------------------------------------------------


def test_unknown_keys_are_errors_with_a_hint() -> None:
    with pytest.raises(ConfigError) as info:
        build(cli={"region": "r", "instance_cuont": "2"})
    message = str(info.value)
    assert "unknown key 'instance_cuont' (from -C); did you mean 'instance_count'?" in message
    assert info.value.exit_code == EXIT_USAGE


def test_unknown_keys_in_a_file_name_the_file() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'regoin' \(from config file c.toml\)"):
        build(file={"regoin": "x"}, file_name="c.toml")


def test_missing_required_key_names_every_way_to_supply_it() -> None:
    with pytest.raises(ConfigError) as info:
        build(file_name="deploy.toml")
    assert info.value.problems == (
        "region is required: pass -C region=..., set MODELPORT_MY_CLOUD_REGION, "
        "or put region in deploy.toml",
    )


def test_every_problem_is_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        build(cli={"bogus": "1", "instance_count": "x"})
    assert len(info.value.problems) == 3  # unknown key, bad int, missing region
    assert "3 problems" in str(info.value)


def test_precedence_file_then_env_then_uri_then_cli() -> None:
    file = {"region": "file", "role": "file", "instance_count": 1, "timeout": 1}
    env = {
        "MODELPORT_MY_CLOUD_ROLE": "env",
        "MODELPORT_MY_CLOUD_INSTANCE_COUNT": "2",
        "MODELPORT_MY_CLOUD_TIMEOUT": "2",
    }
    uri = {"instance_count": "3", "timeout": "3"}
    cli = {"timeout": "4"}
    config = build(file=file, env=env, uri=uri, cli=cli)
    assert (config.region, config.role, config.instance_count, config.timeout) == (
        "file",
        "env",
        3,
        4.0,
    )


def test_env_vars_are_read_for_declared_keys_only() -> None:
    # Other MODELPORT_* variables (MODELPORT_HOME, another target's) are not errors.
    config = build(env={"MODELPORT_MY_CLOUD_REGION": "eu", "MODELPORT_MY_CLOUD_NOPE": "x"})
    assert config.region == "eu"


def test_a_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="from environment variable MODELPORT_MY_CLOUD_TIMEOUT"):
        build(env={"MODELPORT_MY_CLOUD_REGION": "eu", "MODELPORT_MY_CLOUD_TIMEOUT": "x"})


def test_post_init_checks_become_config_errors() -> None:
    @dataclass(frozen=True)
    class Checked:
        port: int = 0

        def __post_init__(self) -> None:
            if self.port < 0:
                raise ValueError("port must not be negative")

    with pytest.raises(ConfigError, match="port must not be negative"):
        build_config(Checked, "t", Sources(cli={"port": "-1"}))


def test_no_config_takes_no_keys() -> None:
    assert build_config(NoConfig, "t", Sources()) == NoConfig()
    with pytest.raises(ConfigError, match="none: this target takes no options"):
        build_config(NoConfig, "t", Sources(cli={"x": "1"}))


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", "b=x=y", "a=2", "dashed-key=3", "empty="]) == {
        "a": "2",
        "b": "x=y",
        "dashed_key": "3",
        "empty": "",
    }
    with pytest.raises(ConfigError) as info:
        parse_assignments(["novalue", "=1"])
    assert len(info.value.problems) == 2


def test_read_config_files(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('region = "eu"\ninstance_count = 2\ntags = { team = "ml" }\n')
    assert read_config_file(toml) == {"region": "eu", "instance_count": 2, "tags": {"team": "ml"}}
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"region": "us"}))
    assert read_config_file(js) == {"region": "us"}
    bad = tmp_path / "bad.toml"
    bad.write_text("region = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(bad)
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ConfigError, match="must hold a table"):
        read_config_file(tmp_path / "list.json")
    (tmp_path / "c.yaml").write_text("a: 1")
    with pytest.raises(ConfigError, match=r"use a \.toml or \.json file"):
        read_config_file(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_config_file(tmp_path / "missing.toml")


# --- describing -----------------------------------------------------------------------------


def test_fields_carry_type_default_help_and_env() -> None:
    fields = {f.name: f for f in fields_of(CloudConfig, "my-cloud")}
    assert fields["region"].required and fields["region"].default_text == "(required)"
    assert fields["region"].help == "Region to deploy to."
    assert fields["role"].help == "the role the service assumes, written over two lines."
    assert fields["synchronous"].default_text == "true"
    assert fields["tags"].default_text == "{}"
    assert fields["tier"].default_text == "small"
    assert fields["memory_mb"].type_name == "int | None"
    assert fields["subnets"].type_name == "tuple[str, ...]"
    assert fields["instance_count"].env_var == "MODELPORT_MY_CLOUD_INSTANCE_COUNT"


def test_names() -> None:
    assert env_var_name("sage-maker.v2", "x") == "MODELPORT_SAGE_MAKER_V2_X"
    assert type_name(dict[str, list[int]]) == "dict[str, list[int]]"


def test_config_to_dict_is_json() -> None:
    config = build(cli={"region": "r", "output": "/o", "subnets": '["a"]'})
    data = config_to_dict(config)
    assert json.loads(json.dumps(data))["output"] == "/o"
    assert data["tier"] == "small"
    assert data["subnets"] == ["a"]
