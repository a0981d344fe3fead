"""The server's options, defined once: the image entrypoint's parser and the CLI agree."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest

from modelport.cli.serve_command import serve
from modelport.errors import UsageError
from modelport.model_format.manifest import MANIFEST_NAME
from modelport.plugins.testing import make_test_package
from modelport.serving.options import (
    AZUREML_MODEL_DIR_ENV,
    SAGEMAKER_MODEL_DIR,
    SERVE_OPTIONS,
    mounted_package,
    package_path,
    parse_args,
    serve_config,
)


def test_the_cli_has_exactly_the_options_of_the_table() -> None:
    # --storage-option is where a package URI is read from, every package command's, not serve's.
    flags = {o.opts[0] for o in serve.params if isinstance(o, click.Option)}
    flags -= {"--help", "--storage-option"}
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


# --- the package a cloud mounted -------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ``Y = X * scale`` package as an archive and as a directory."""
    if (SAGEMAKER_MODEL_DIR / MANIFEST_NAME).is_file():
        pytest.skip(f"this machine has a package at {SAGEMAKER_MODEL_DIR}, which comes first")
    root = tmp_path_factory.mktemp("mounted")
    return {
        "archive": make_test_package(root / "model.mport", scale=2.0),
        "directory": make_test_package(root / "model-dir", scale=3.0),
    }


def azureml_env(path: Path) -> dict[str, str]:
    return {AZUREML_MODEL_DIR_ENV: str(path)}


def test_azure_mounts_the_packages_files_themselves(made: dict[str, Path], tmp_path: Path) -> None:
    mount = shutil.copytree(made["directory"], tmp_path / "azureml-models" / "m" / "1")
    assert mounted_package(azureml_env(mount)) == mount


def test_azure_mounts_one_folder_holding_the_package(made: dict[str, Path], tmp_path: Path) -> None:
    mount = tmp_path / "1"
    shutil.copytree(made["directory"], mount / "model-dir")
    (mount / "notes").mkdir()  # a folder that is no package does not count
    assert mounted_package(azureml_env(mount)) == mount / "model-dir"


def test_azure_mounts_one_archive(made: dict[str, Path], tmp_path: Path) -> None:
    mount = tmp_path / "1"
    mount.mkdir()
    shutil.copyfile(made["archive"], mount / "package.mport")
    (mount / "README.txt").write_text("not a package")
    assert mounted_package(azureml_env(mount)) == mount / "package.mport"


@pytest.mark.parametrize(
    "layout", [("a.mport", "b.mport"), ("a.mport", "pkg/"), ("one/", "two/")], ids=str
)
def test_two_candidates_are_no_guess(
    made: dict[str, Path], tmp_path: Path, layout: tuple[str, str]
) -> None:
    mount = tmp_path / "1"
    mount.mkdir()
    for name in layout:
        if name.endswith("/"):
            shutil.copytree(made["directory"], mount / name.rstrip("/"))
        else:
            shutil.copyfile(made["archive"], mount / name)
    assert mounted_package(azureml_env(mount)) is None


def test_only_one_level_is_looked_at(made: dict[str, Path], tmp_path: Path) -> None:
    mount = tmp_path / "1"
    shutil.copytree(made["directory"], mount / "deeper" / "model-dir")
    assert mounted_package(azureml_env(mount)) is None


@pytest.mark.parametrize("value", ["", "/nonexistent/azureml-models/m/1"])
def test_no_mount_is_no_package(made: dict[str, Path], value: str) -> None:
    assert mounted_package({AZUREML_MODEL_DIR_ENV: value}) is None
    assert mounted_package({}) is None


def test_a_mount_that_is_a_file_is_no_package(made: dict[str, Path]) -> None:
    assert mounted_package(azureml_env(made["archive"])) is None


def test_the_package_given_wins_over_the_mount(made: dict[str, Path], tmp_path: Path) -> None:
    mount = shutil.copytree(made["directory"], tmp_path / "1")
    assert package_path(str(made["archive"]), azureml_env(mount)) == made["archive"]
    assert package_path(None, azureml_env(mount)) == mount


def test_nothing_to_serve_says_every_way_to_give_a_package(
    made: dict[str, Path], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError) as raised:
        package_path(None, azureml_env(empty))
    message = str(raised.value)
    assert "pass PKG, or set MODELPORT_PACKAGE" in message
    assert str(SAGEMAKER_MODEL_DIR) in message
    assert "Azure ML model asset" in message


def test_the_server_config_serves_the_mounted_archive(
    made: dict[str, Path], tmp_path: Path
) -> None:
    mount = tmp_path / "1"
    mount.mkdir()
    shutil.copyfile(made["archive"], mount / "package.mport")
    config = serve_config(None, parse_args([], {}), azureml_env(mount))
    assert config.package == mount / "package.mport"
