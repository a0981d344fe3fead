"""Target configuration: typed, frozen dataclasses filled from files, env vars, URIs and ``-C``.

A target declares its options as a frozen dataclass (its ``config_class``). Each field is one
``-C key=value`` option; its annotation is the type the string is parsed to and its
``metadata["help"]`` (or an ``Attributes:`` entry in the class docstring) says what it means::

    @dataclass(frozen=True)
    class Config:
        region: str = field(metadata={"help": "AWS region to deploy to."})
        instance_count: int = field(default=1, metadata={"help": "Instances behind the endpoint."})

Values come from four sources, later ones winning: ``--config-file FILE.toml|json`` (a flat table
of key = value), environment variables ``MODELPORT_<TARGET>_<KEY>``, the target URI
(``sagemaker:/eu-west-1``, interpreted by the target), and ``-C key=value`` on the command line.

Parsing is strict, unlike MLflow's: ``true/false/yes/no/on/off/1/0`` are booleans and anything
else is an error; ints refuse ``1.5``; dicts and lists are JSON; an unknown key is an error with a
"did you mean" hint; a missing required key names the option, env var and file that can supply it.
Every problem is collected and reported together.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import os
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

from modelport.errors import ConfigError, UsageError

ENV_PREFIX = "MODELPORT_"
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class NoConfig:
    """The config of a target that takes no options."""


@dataclass(frozen=True)
class ConfigField:
    """One option of a target's config, as ``targets help`` shows it."""

    name: str
    type: Any
    required: bool
    default: Any
    help: str
    env_var: str

    @property
    def type_name(self) -> str:
        """The type, written for people (``int``, ``str | None``, ``list[str]``)."""
        return type_name(self.type)

    @property
    def default_text(self) -> str:
        """The default as it would be written on the command line, or ``(required)``."""
        if self.required:
            return "(required)"
        if self.default is None:
            return "none"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, enum.Enum):
            return str(self.default.value)
        if isinstance(self.default, (dict, list, tuple)):
            return json.dumps(self.default)
        return str(self.default)


def env_var_name(target: str, key: str) -> str:
    """``MODELPORT_<TARGET>_<KEY>``, upper-cased, with every non-alphanumeric character as ``_``."""
    return re.sub(r"[^A-Z0-9]", "_", f"{ENV_PREFIX}{target}_{key}".upper())


def fields_of(config_class: type[Any], target: str) -> list[ConfigField]:
    """Describe every option of a config dataclass, with resolved types and help text.

    Raises:
        TypeError: ``config_class`` is not a dataclass (a bug in the target).
    """
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"{config_class!r} is not a dataclass")
    hints = typing.get_type_hints(config_class)
    doc_help = _attribute_docs(config_class.__doc__ or "")
    result = []
    for f in dataclasses.fields(config_class):
        if not f.init:
            continue
        required = f.default is _MISSING and f.default_factory is _MISSING
        if f.default is not _MISSING:
            default: Any = f.default
        elif f.default_factory is not _MISSING:
            default = f.default_factory()
        else:
            default = None
        result.append(
            ConfigField(
                name=f.name,
                type=hints.get(f.name, str),
                required=required,
                default=default,
                help=str(f.metadata.get("help") or doc_help.get(f.name, "")).strip(),
                env_var=env_var_name(target, f.name),
            )
        )
    return result


def _attribute_docs(doc: str) -> dict[str, str]:
    """Read ``name: text`` entries of a Google-style ``Attributes:`` section."""
    result: dict[str, str] = {}
    lines = doc.expandtabs().splitlines()
    inside = False
    indent = 0
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        if stripped in ("Attributes:", "Args:", "Options:"):
            inside, current = True, None
            indent = len(line) - len(line.lstrip()) + 1
            continue
        if not inside:
            continue
        if stripped and len(line) - len(line.lstrip()) < indent:
            inside = False
            continue
        match = re.match(r"^\s*(\w+)(?:\s*\(.*?\))?\s*:\s*(.*)$", line)
        if match and (len(line) - len(line.lstrip())) <= indent + 4 and match.group(1):
            current = match.group(1)
            result[current] = match.group(2).strip()
        elif current and stripped:
            result[current] = f"{result[current]} {stripped}".strip()
    return result


# --- types ----------------------------------------------------------------------------------


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def type_name(tp: Any) -> str:
    """A readable name for a type annotation."""
    if tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    if _is_union(tp):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(tp))
    if origin is not None:
        args = typing.get_args(tp)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(type_name(a) for a in args)}]" if args else base
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(str(m.value) for m in tp)
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _describe(tp: Any) -> str:
    """How a type is written on the command line, for error messages."""
    if tp is bool:
        return "a boolean (true/false, yes/no, on/off, 1/0)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    origin = typing.get_origin(tp)
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        return f"a JSON array ({type_name(tp)})"
    if origin in (dict, Mapping) or tp is dict:
        return f"a JSON object ({type_name(tp)})"
    if origin is Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return f"one of {type_name(tp)}"
    return type_name(tp)


def convert(value: Any, tp: Any) -> Any:
    """Convert ``value`` (a CLI/env string, or a TOML/JSON value) to the declared type ``tp``.

    Raises:
        ValueError: the value cannot be converted losslessly; the message says what was expected.
    """
    if tp is Any:
        return _json_or_text(value) if isinstance(value, str) else value
    if _is_union(tp):
        args = typing.get_args(tp)
        if type(None) in args and (
            value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))
        ):
            return None
        # Try str last so that "3" becomes 3 for ``int | str``.
        for arg in sorted((a for a in args if a is not type(None)), key=lambda a: a is str):
            try:
                return convert(value, arg)
            except ValueError:
                continue
        raise ValueError(f"expected {type_name(tp)}")
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        for a in allowed:
            if value == a or (
                isinstance(value, str) and not isinstance(a, str) and value == str(a)
            ):
                return a
        raise ValueError(f"expected one of {type_name(tp)}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if value in (member.value, member.name) or value is member:
                return member
        raise ValueError(f"expected one of {type_name(tp)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"expected {_describe(tp)}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"expected {_describe(tp)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            return int(value)
        raise ValueError(f"expected {_describe(tp)}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"expected {_describe(tp)}")
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            raise ValueError(f"expected {_describe(tp)}") from None
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError("expected a string")
    if tp is Path:
        if isinstance(value, (str, os.PathLike)):
            return Path(os.path.expanduser(os.fspath(value)))
        raise ValueError("expected a path")
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        data = _json(value, tp) if isinstance(value, str) else value
        if not isinstance(data, (list, tuple)):
            raise ValueError(f"expected {_describe(tp)}")
        args = typing.get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(data):
                raise ValueError(f"expected {_describe(tp)} of {len(args)} items")
            return tuple(convert(v, a) for v, a in zip(data, args, strict=True))
        item = args[0] if args else Any
        items = [convert(v, item) for v in data]
        kind = origin or tp
        return items if kind is list else kind(items)
    if origin in (dict, Mapping) or tp is dict:
        data = _json(value, tp) if isinstance(value, str) else value
        if not isinstance(data, Mapping):
            raise ValueError(f"expected {_describe(tp)}")
        args = typing.get_args(tp)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        return {convert(k, key_type): convert(v, value_type) for k, v in data.items()}
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ValueError(f"unsupported option type {type_name(tp)}")


def _json(text: str, tp: Any) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"expected {_describe(tp)}, got text that is not valid JSON") from None


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# --- sources --------------------------------------------------------------------------------


def parse_assignments(pairs: typing.Iterable[str]) -> dict[str, str]:
    """Parse ``key=value`` strings from ``-C`` options (later ones win).

    Raises:
        ConfigError: an item has no ``=`` or an empty key.
    """
    result: dict[str, str] = {}
    problems = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"-C {pair!r}: expected key=value")
            continue
        result[key.replace("-", "_")] = value
    if problems:
        raise ConfigError(problems)
    return result


def _toml_module(path: Path) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # pragma: no cover - Python 3.10
        import tomli  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # pragma: no cover
        raise ConfigError(
            [
                f"config file {path}: reading TOML on Python 3.10 needs 'pip install tomli'; "
                "or use a .json file"
            ]
        ) from None
    return tomli  # pragma: no cover


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a flat table of options from a ``.toml`` or ``.json`` file.

    Raises:
        ConfigError: unreadable file, unknown suffix, syntax error, or not a table.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read config file {p}: {exc.strerror or exc}"]) from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            tomllib = _toml_module(p)
            parsed: Any = tomllib.loads(data.decode("utf-8"))
        elif suffix == ".json":
            parsed = json.loads(data)
        else:
            raise ConfigError([f"config file {p}: use a .toml or .json file"])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError([f"config file {p} is not valid {suffix[1:].upper()}: {exc}"]) from None
    if not isinstance(parsed, dict):
        raise ConfigError([f"config file {p} must hold a table (object) of key = value"])
    return parsed


@dataclass(frozen=True)
class Sources:
    """Raw option values by source, lowest precedence first; the CLI's ``-C`` wins."""

    file: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    file_name: str | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    uri: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cli: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: How messages name the last source: ``-C`` for the CLI, keyword arguments for ``connect``.
    cli_name: str = "-C"


def build_config(config_class: type[Any], target: str, sources: Sources) -> Any:
    """Build a target's config from every source, checking every key and value.

    Environment variables are read only for declared keys (an unrelated ``MODELPORT_*`` variable
    is not an error); keys from the file, the URI and ``-C`` must all be declared.

    Raises:
        ConfigError: every unknown key (with a "did you mean" hint), unparsable value and
            missing required key, reported together.
    """
    fields = {f.name: f for f in fields_of(config_class, target)}
    problems: list[str] = []
    raw: dict[str, tuple[Any, str]] = {}
    layers: list[tuple[Mapping[str, Any], str]] = [
        (sources.file, f"config file {sources.file_name or ''}".strip()),
        ({k: sources.env[f.env_var] for k, f in fields.items() if f.env_var in sources.env}, ""),
        (sources.uri, "target URI"),
        (sources.cli, sources.cli_name),
    ]
    for values, where in layers:
        for key, value in values.items():
            norm = str(key).replace("-", "_")
            if norm not in fields:
                problems.append(_unknown(norm, where, fields))
                continue
            origin = where or f"environment variable {fields[norm].env_var}"
            raw[norm] = (value, origin)
    values_out: dict[str, Any] = {}
    for name, (value, origin) in raw.items():
        f = fields[name]
        try:
            values_out[name] = convert(value, f.type)
        except ValueError as exc:
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            problems.append(f"{name} (from {origin}): {exc}, got {shown!r}")
    for f in fields.values():
        if f.required and f.name not in raw:
            file_hint = "the --config-file" if sources.file_name is None else sources.file_name
            problems.append(
                f"{f.name} is required: pass -C {f.name}=..., set {f.env_var}, "
                f"or put {f.name} in {file_hint}"
            )
    if problems:
        raise ConfigError(problems, target)
    try:
        return config_class(**values_out)
    except (TypeError, ValueError) as exc:
        # A config class may check combinations of values in __post_init__.
        raise ConfigError([str(exc)], target) from None


def _unknown(key: str, where: str, fields: Mapping[str, ConfigField]) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = ", ".join(sorted(fields)) or "none: this target takes no options"
    return f"unknown key {key!r} (from {where}){hint} (known keys: {known})"


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config instance as JSON-friendly values (for ``--json`` and plans)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise UsageError(f"{config!r} is not a config dataclass instance")
    return {
        f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config) if f.init
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
