"""Sign, push, pull, serve and deploy under the trust policy, through the CLI, end to end.

A real registry (Debian's ``docker-registry``: CI's on 127.0.0.1:5000, else one started here),
the reference ``model_signing`` CLI for the packages it signs, and real ``modelport serve``
processes whose answers are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_serving import start

from oci_servers import registry_available, registry_server
from signing_keys import ec_key_pair

BIN = Path(sys.executable).parent
REQUEST = (b'{"inputs": [[1, 0, 0]]}', {"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``HOST:PORT`` of a plain-HTTP registry: CI's, or one of our own."""
    given = os.environ.get("MODELPORT_TEST_REGISTRY")
    if given:
        yield given
        return
    if not registry_available():
        pytest.skip("docker-registry is not installed (.ci/setup-containers.sh installs it)")
    with registry_server(tmp_path_factory.mktemp("registry")) as server:
        yield server.host


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("keys")
    return {name: ec_key_pair(root / name, name) for name in ("ours", "theirs")}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    for name in ("MODELPORT_TRUST", "MODELPORT_TRUSTED_KEYS", "MODELPORT_STORAGE_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=cwd,
    )


def _ref(registry: str, name: str) -> str:
    return f"oci://{registry}/modelport-test/{uuid.uuid4().hex[:12]}/{name}:1"


def _serve_predicts_under_require(ref: str, public: Path, log_dir: Path) -> str:
    """``modelport serve REF --trust require``: it answers as the model does; its log."""
    served = start(
        ref,
        ["--storage-option", "insecure=true", "--trust", "require", "--trusted-key", str(public)],
        log_dir=log_dir,
    )
    try:
        answer = served.post("/invocations", *REQUEST)
        assert answer.status == 200, answer.body
        assert json.loads(answer.body) == {"predictions": [[0.0, 1.0]]}
        return served.log()
    finally:
        assert served.stop() == 0


@pytest.mark.slow
def test_sign_push_pull_serve_under_require(
    registry: str,
    keys: dict[str, tuple[Path, Path]],
    tiny_versions: dict[str, Path],
    tmp_path: Path,
) -> None:
    private, public = keys["ours"]
    package = tmp_path / "tiny.mport"
    shutil.copyfile(tiny_versions["2"], package)
    before = json.loads(_run("modelport", "inspect", str(package), "--json").stdout)

    signed = _run("modelport", "sign", str(package), "--key", str(private), "--json")
    assert signed.returncode == 0, signed.stderr
    fingerprint = json.loads(signed.stdout)["fingerprint"]
    assert fingerprint.startswith("sha256:")
    checked = _run("modelport", "verify", str(package), "--key", str(public))
    assert checked.returncode == 0, checked.stderr
    assert f"signed by: {fingerprint}" in checked.stdout

    ref = _ref(registry, "tiny")
    pushed = _run("modelport", "push", str(package), ref, "--insecure")
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip().splitlines()[-1]
    assert "(referrer)" in pushed.stdout

    pulled = _run("modelport", "pull", ref, "-o", str(tmp_path / "pulled"), "--insecure")
    assert pulled.returncode == 0, pulled.stderr
    assert f"oci digest: {digest}" in pulled.stdout
    assert (tmp_path / "pulled" / "model.sig").is_file()

    pinned = f"{ref.rsplit(':', 1)[0]}@{digest}"
    shown = _run("modelport", "inspect", pinned, "--storage-option", "insecure=true", "--json")
    assert shown.returncode == 0, shown.stderr
    facts = json.loads(shown.stdout)
    # Signing left the package's identity as it was; the registry names the artifact.
    assert facts["digest"] == before["digest"]
    assert facts["signature_fingerprint"] == fingerprint
    assert facts["oci_digest"] == digest

    log = _serve_predicts_under_require(pinned, public, tmp_path)
    assert f"signature verified: {fingerprint}" in log


@pytest.mark.slow
def test_a_package_signed_by_the_model_signing_cli_serves_under_require(
    registry: str,
    keys: dict[str, tuple[Path, Path]],
    tiny_versions: dict[str, Path],
    tmp_path: Path,
) -> None:
    private, public = keys["theirs"]
    package = tmp_path / "tiny"
    shutil.copytree(tiny_versions["dir"], package)
    signed = _run(
        "model_signing", "sign", "key", str(package),
        "--private_key", str(private), "--signature", str(package / "model.sig"),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    ref = _ref(registry, "oms")
    assert _run("modelport", "push", str(package), ref, "--insecure").returncode == 0

    _serve_predicts_under_require(ref, public, tmp_path)


@pytest.mark.slow
def test_require_refuses_unsigned_and_untrusted_packages_with_exit_4(
    keys: dict[str, tuple[Path, Path]], tiny_versions: dict[str, Path], tmp_path: Path
) -> None:
    package = tmp_path / "tiny.mport"
    shutil.copyfile(tiny_versions["2"], package)
    trust = ("--trust", "require", "--trusted-key", str(keys["ours"][1]))

    unsigned = _run("modelport", "serve", str(package), "--port", "0", *trust)
    assert unsigned.returncode == 4, unsigned.stderr
    assert unsigned.stderr.startswith("modelport: refusing to serve"), unsigned.stderr
    assert "Traceback" not in unsigned.stderr

    assert _run("modelport", "sign", str(package), "--key", str(keys["theirs"][0])).returncode == 0
    wrong = _run("modelport", "verify", str(package), "--key", str(keys["ours"][1]))
    assert wrong.returncode == 4, wrong.stdout
    assert "OK:" not in wrong.stdout and "which is not trusted" in wrong.stderr
    untrusted = _run("modelport", "serve", str(package), "--port", "0", *trust)
    assert untrusted.returncode == 4, untrusted.stderr
    assert "refusing to serve" in untrusted.stderr
    assert "not trusted" in untrusted.stderr or "no trusted key" in untrusted.stderr

    deployed = _run("modelport", "deploy", str(package), "-t", "local", "-n", "refused", *trust)
    assert deployed.returncode == 4, deployed.stderr
    assert "refusing to deploy" in deployed.stderr
    listed = _run("modelport", "deployments", "list", "-t", "local", "--json")
    assert "refused" not in listed.stdout

    # A wrong policy value is a usage error, as every other bad flag.
    bad = _run("modelport", "serve", str(package), "--trust", "sometimes")
    assert bad.returncode == 2


@pytest.mark.slow
def test_a_local_deployment_records_who_signed_it_and_the_oci_digest(
    registry: str,
    keys: dict[str, tuple[Path, Path]],
    tiny_versions: dict[str, Path],
    tmp_path: Path,
) -> None:
    private, public = keys["ours"]
    package = tmp_path / "tiny.mport"
    shutil.copyfile(tiny_versions["1"], package)
    assert _run("modelport", "sign", str(package), "--key", str(private)).returncode == 0
    ref = _ref(registry, "deployed")
    pushed = _run("modelport", "push", str(package), ref, "--insecure")
    digest = pushed.stdout.strip().splitlines()[-1]
    name = f"signed-{uuid.uuid4().hex[:6]}"
    deployed = _run(
        "modelport", "deploy", ref, "-t", "local", "-n", name, "--storage-option",
        "insecure=true", "--trust", "require", "--trusted-key", str(public), "--json",
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    try:
        got = _run("modelport", "deployments", "get", "-t", "local", "-n", name, "--json")
        details = json.loads(got.stdout)["details"]
        assert details["oci_digest"] == digest
        assert details["signature_fingerprint"].startswith("sha256:")
    finally:
        _run("modelport", "deployments", "delete", "-t", "local", "-n", name)
