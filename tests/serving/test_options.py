"""The server's options, defined once: the image entrypoint's parser and the CLI agree."""

from __future__ import annotations

import click
import pytest

from modelport.cli.serve_command import serve
from modelport.errors import UsageError
from modelport.serving.options import SERVE_OPTIONS, parse_args


def test_the_cli_has_exactly_the_options_of_the_table() -> None:
    flags = {o.opts[0] for o in serve.params if isinstance(o, click.Option)} - {"--help"}
    assert flags == {option.flag for option in SERVE_OPTIONS}
    defaults = {p.name: p.default for p in serve.params if isinstance(p, click.Option)}
    for option in SERVE_OPTIONS:
        assert defaults[option.name] == option.default, option.name


def test_arguments_then_environment_then_defaults() -> None:
    values = parse_args(
        ["--workers", "2", "--max-batch-wait-ms=0.5", "--no-batching"],
        {"MODELPORT_WORKERS": "7", "MODELPORT_THREADS": "4", "MODELPORT_MAX_BATCH_SIZE": " "},
    )
    assert values["workers"] == 2  # the argument beats the environment
    assert values["threads"] == 4  # the environment beats the default
    assert values["max_batch_size"] == 64  # a blank variable is no value
    assert values["max_batch_wait_ms"] == 0.5
    assert values["no_batching"] is True and values["dev"] is False
    assert parse_args([], {"MODELPORT_NO_BATCHING": "yes"})["no_batching"] is True


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--wokers", "2"], {}, "unknown server option '--wokers'"),
        (["--workers"], {}, "--workers needs a value"),
        (["--workers", "0"], {}, "--workers: must be at least 1, got 0"),
        (["--port", "70000"], {}, "--port: must be at most 65535"),
        (["--max-body-mb", "0"], {}, "--max-body-mb: must be greater than 0"),
        (["--threads", "many"], {}, "--threads: expected an integer, got 'many'"),
        (["--dev=1"], {}, "--dev takes no value"),
        (["model.mport"], {}, "unknown server option 'model.mport'"),
        ([], {"MODELPORT_NO_BATCHING": "maybe"}, "MODELPORT_NO_BATCHING: expected a boolean"),
    ],
)
def test_bad_options_are_usage_errors(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_args(argv, env)
    assert message in str(raised.value)
