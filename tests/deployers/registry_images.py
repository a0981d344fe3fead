"""Images in the local registry for the fakes' *process* hosts, shared by the clouds' fakes.

A process host runs modelport's entrypoint in a child process instead of the image itself; it needs
what the image would have given the container: its environment and the package baked into it.

- :class:`RegistryImages` pulls an image's config and layers from a plain-HTTP registry on this
  machine (the registry v2 API) and extracts the package (``opt/modelport/package/``), once per
  manifest digest;
- :func:`push_process_image` pushes a small image for process hosting (one layer, no build, no
  engine) and returns its pinned reference;
- :class:`ProcessImages` and :class:`ServingImages` are what the session fixtures hand the tests.

Used by ``azureml/fake_azure.py`` and ``vertex/fake_vertex.py``. Imported by module name
(``from registry_images import ...``): ``tests/deployers`` is on ``sys.path``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hosting import Answer, HostFailure, exchange

#: Where modelport's image build bakes the package (src/modelport/image/dockerfile.py).
IMAGE_PACKAGE_DIR = "opt/modelport/package"
#: The entrypoint of modelport's images, in the layer under the package's.
ENTRYPOINT_FILE = "opt/modelport/entrypoint.py"
#: What a manifest GET accepts (an image, or an index of them; OCI or Docker's).
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


# --- images from the registry ---------------------------------------------------------------------


class RegistryImages:
    """Pulls images from plain-HTTP registries on this machine (the v2 API), for process hosts.

    ``package(ref)`` gives the image's environment and the package baked into it, extracted once
    per manifest digest (kept across resets: a digest's content never changes).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._lock = threading.Lock()
        self._extracted: dict[str, tuple[dict[str, str], Path | None]] = {}

    @staticmethod
    def _split(ref: str) -> tuple[str, int, str, str]:
        """``host:port/repo:tag`` or ``...@sha256:...`` -> (host, port, repository, reference)."""
        registry, _, rest = ref.partition("/")
        if not rest or ("." not in registry and ":" not in registry and registry != "localhost"):
            raise HostFailure(f"The image {ref} names no registry on this machine.")
        host, _, port = registry.partition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise HostFailure(f"The image {ref} is not in a local registry (no network here).")
        if "@" in rest:
            repository, reference = rest.split("@", 1)
        else:
            last = rest.rsplit("/", 1)[-1]
            repository, reference = rest.rsplit(":", 1) if ":" in last else (rest, "latest")
        return "127.0.0.1", int(port or 80), repository, reference

    def _get(self, host: str, port: int, path: str, accept: str | None = None) -> Answer:
        headers = {"Accept": accept} if accept else {}
        answer = exchange(port, "GET", path, headers=headers, timeout=120, host=host)
        if answer.status != 200:
            raise HostFailure(
                f"The registry answered {answer.status} to GET {path}",
                answer.body[:200].decode("utf-8", "replace"),
            )
        return answer

    def _manifest(self, host: str, port: int, repository: str, reference: str) -> tuple[str, Any]:
        """The image manifest (an index resolved to linux/amd64 or the first) and its digest."""
        while True:
            answer = self._get(
                host, port, f"/v2/{repository}/manifests/{reference}", MANIFEST_TYPES
            )
            document = json.loads(answer.body)
            digest = answer.header("Docker-Content-Digest") or (
                "sha256:" + hashlib.sha256(answer.body).hexdigest()
            )
            if "manifests" not in document:
                return digest, document
            entries = document["manifests"]
            chosen = next(
                (
                    m
                    for m in entries
                    if (m.get("platform") or {}).get("architecture") == "amd64"
                    and (m.get("platform") or {}).get("os") == "linux"
                ),
                entries[0],
            )
            reference = chosen["digest"]

    def package(self, ref: str) -> tuple[str, dict[str, str], Path | None]:
        """(manifest digest, the image's ENV, its extracted package directory or None).

        Raises:
            HostFailure: the image cannot be pulled (the cloud's message).
        """
        try:
            host, port, repository, reference = self._split(ref)
            digest, manifest = self._manifest(host, port, repository, reference)
        except HostFailure:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise HostFailure(f"Failed to pull the image {ref}.", str(exc)) from None
        with self._lock:
            if digest in self._extracted:
                env, directory = self._extracted[digest]
                return digest, dict(env), directory
        try:
            config = json.loads(
                self._get(host, port, f"/v2/{repository}/blobs/{manifest['config']['digest']}").body
            )
            env = dict(
                item.split("=", 1)
                for item in (config.get("config") or {}).get("Env") or []
                if "=" in item
            )
            directory = self._extract_package(host, port, repository, manifest, digest)
        except HostFailure:
            raise
        except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
            raise HostFailure(f"Failed to pull the image {ref}.", str(exc)) from None
        with self._lock:
            self._extracted[digest] = (env, directory)
        return digest, dict(env), directory

    def _extract_package(
        self, host: str, port: int, repository: str, manifest: Any, digest: str
    ) -> Path | None:
        """The top-most layer holding ``opt/modelport/package/``, extracted (None: no package)."""
        prefix = IMAGE_PACKAGE_DIR + "/"
        for layer in reversed(manifest.get("layers") or []):
            blob = self._get(host, port, f"/v2/{repository}/blobs/{layer['digest']}").body
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
                members = []
                below_package = False
                for member in tar:
                    name = member.name[2:] if member.name.startswith("./") else member.name
                    if name in ("opt/modelport/.wh.package", f"{prefix}.wh..wh..opq"):
                        return None  # removed in this layer: the image has no package
                    if name.startswith(prefix) and name != prefix:
                        members.append((name[len(prefix) :], member))
                    # modelport's images copy the package above the entrypoint: a layer with the
                    # entrypoint and no package means a runtime image (no need to read the venv).
                    below_package = below_package or name == ENTRYPOINT_FILE
                if not members:
                    if below_package:
                        return None
                    continue
                dest = Path(tempfile.mkdtemp(prefix="image-package-", dir=self.workdir))
                for relative, member in members:
                    parts = PurePosixPath(relative).parts
                    if ".." in parts or relative.startswith("/"):
                        raise HostFailure(f"The image {digest} has an unsafe path {member.name}")
                    target = dest.joinpath(*parts)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif member.isfile():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        source = tar.extractfile(member)
                        assert source is not None
                        with source, open(target, "wb") as out:
                            shutil.copyfileobj(source, out)
                return dest
        return None


def push_process_image(
    registry: str, package: str | os.PathLike[str] | None, repository: str, tag: str
) -> str:
    """Push a small image for *process* hosting to a plain-HTTP registry; its pinned reference.

    No build and no engine: one layer with the package at ``opt/modelport/package/`` (or, with
    ``package=None``, a runtime image: only ``opt/modelport/entrypoint.py``) and the variables
    modelport's images set (``MODELPORT_PACKAGE``, ``MODELPORT_PACKAGE_DIGEST``,
    ``MODELPORT_HOST``). A container could not run it (no Python in it); the fake's process
    hosts can, which is all the fast tests need.
    """
    from modelport.image.dockerfile import PACKAGE_DIR
    from modelport.model_format.package import extract_verified

    env = [f"MODELPORT_PACKAGE={PACKAGE_DIR}", "MODELPORT_HOST=0.0.0.0"]
    layer = io.BytesIO()
    with (
        tempfile.TemporaryDirectory(prefix="process-image-") as tmp,
        tarfile.open(fileobj=layer, mode="w") as tar,
    ):
        if package is None:
            source = Path(tmp) / "entrypoint.py"
            source.write_text("# modelport's entrypoint stands here in a runtime image\n")
            tar.add(source, arcname=ENTRYPOINT_FILE)
        else:
            manifest = extract_verified(Path(package), Path(tmp) / "package")
            env.append(f"MODELPORT_PACKAGE_DIGEST={manifest.digest}")
            tar.add(Path(tmp) / "package", arcname=IMAGE_PACKAGE_DIR)
    data = layer.getvalue()
    layer_digest = "sha256:" + hashlib.sha256(data).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": env, "Cmd": ["serve"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    ).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    host, _, port_text = registry.partition(":")
    port = int(port_text or 80)
    for digest, blob in ((layer_digest, data), (config_digest, config)):
        started = exchange(port, "POST", f"/v2/{repository}/blobs/uploads/", b"", host=host)
        location = started.header("Location") or ""
        if started.status != 202 or not location:
            raise OSError(f"the registry refused an upload: {started.status}")
        target = urllib.parse.urlsplit(location)
        query = f"{target.query}&" if target.query else ""
        done = exchange(
            port,
            "PUT",
            f"{target.path}?{query}digest={digest}",
            blob,
            {"Content-Type": "application/octet-stream"},
            host=host,
        )
        if done.status != 201:
            raise OSError(f"the registry refused blob {digest}: {done.status} {done.body[:200]!r}")
    manifest_body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(data),
                }
            ],
        }
    ).encode()
    answer = exchange(
        port,
        "PUT",
        f"/v2/{repository}/manifests/{tag}",
        manifest_body,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        host=host,
    )
    if answer.status != 201:
        raise OSError(f"the registry refused the manifest: {answer.status} {answer.body[:200]!r}")
    return f"{registry}/{repository}@sha256:{hashlib.sha256(manifest_body).hexdigest()}"


# --- images for the tests ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessImages:
    """Images for process hosting in the local registry, pinned by digest.

    Attributes:
        v1: the ``v1`` package (``Y = X``) baked in.
        v2: the ``v2`` package (``Y = 2 X``) baked in.
        runtime: no package (for model assets).
    """

    v1: str
    v2: str
    runtime: str


@dataclass(frozen=True)
class ServingImages:
    """Images in the local registry for deployments that really serve.

    Attributes:
        package: the ``v1`` package's serving image (package baked in), pinned by digest.
        runtime: its runtime image (no package: for model assets), pinned by digest.
        digest: the ``v1`` package's digest.
    """

    package: str
    runtime: str
    digest: str
