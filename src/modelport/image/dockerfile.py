"""The serving image's Dockerfile: package-independent runtime stages, then the package stage.

One image serves every platform (docker, SageMaker, Azure ML, Vertex AI, Kubernetes): the runtime
only, in a venv made with ``python3 -m venv`` (so the same Dockerfile works on ``python:*-slim``
and on a plain Debian with ``python3`` and ``python3-venv``); a non-root user; ``EXPOSE 8080``; a
``HEALTHCHECK`` on the ready route; an exec-form ``ENTRYPOINT`` that accepts SageMaker's
``serve``; the SageMaker ``accept-bind-to-port`` label; OCI labels and modelport's own
(:mod:`modelport.deployers.kit.naming`) with the package's name, version and digest; the package
verified at build time and at every start. The only thing a build downloads is Python packages,
from the index given (``--index-url``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from modelport.deployers.kit.naming import Facts, Platform, label_key, labels, with_provenance

if TYPE_CHECKING:
    from modelport.model_format.manifest import Manifest
    from modelport.model_format.package import Provenance

#: Where things live inside the image.
VENV = "/opt/venv"
APP_DIR = "/opt/modelport"
PACKAGE_DIR = f"{APP_DIR}/package"
ENTRYPOINT = f"{APP_DIR}/entrypoint.py"
#: The public keys a trust policy baked into an image checks signatures with: in the context,
#: and in the image.
TRUSTED_KEYS_CONTEXT = "trusted-keys"
TRUSTED_KEYS_DIR = f"{APP_DIR}/trusted-keys"
#: The user the server runs as (a fixed UID, so platforms that check for non-root can see it).
USER_NAME = "modelport"
USER_ID = 10001
CONTAINER_PORT = 8080

#: The label holding the package digest (every modelport image has it).
LABEL_DIGEST = label_key(Platform.DOCKER, "package_digest")
LABEL_SAGEMAKER_PORT = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"


# --- names --------------------------------------------------------------------------------------


def default_base_image(python_version: str | None = None) -> str:
    """The official slim Python image for the packing Python's ``major.minor``.

    Args:
        python_version: e.g. ``"3.11.7"`` (a manifest's ``python``); None or empty means the
            Python running this code.
    """
    match = re.match(r"^(\d+)\.(\d+)", python_version or "")
    if match:
        return f"python:{match.group(1)}.{match.group(2)}-slim"
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def image_reference(name: str, version: str) -> str:
    """``<name>:<version>`` turned into a valid Docker image reference.

    Repository names allow lowercase letters, digits and ``._-`` separators; tags allow
    ``[A-Za-z0-9_.-]`` up to 128 characters and cannot start with ``.`` or ``-``.
    """
    repo = re.sub(r"[^a-z0-9._-]+", "-", name.lower())
    repo = re.sub(r"[._-]{2,}", "-", repo).strip("._-") or "model"
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", version).lstrip(".-")[:128] or "latest"
    return f"modelport/{repo}:{tag}"


# --- the Dockerfile -----------------------------------------------------------------------------


def _json_list(items: Sequence[str]) -> str:
    return json.dumps(list(items))


def _label_lines(values: Mapping[str, str]) -> str:
    body = " \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in values.items())
    return f"LABEL {body}"


def image_labels(
    manifest: Manifest, base_image: str, provenance: Provenance | None = None
) -> dict[str, str]:
    """The labels of a package's image: OCI, SageMaker and modelport's own (:mod:`~.naming`).

    Args:
        manifest: the package's manifest (name, version, digest, flavor).
        base_image: the base image, named in a label.
        provenance: the package's provenance (``Package.provenance``): its signature's
            fingerprint and the OCI digest it was pulled by are labelled when known.
    """
    from modelport import __version__

    facts = Facts(
        package_digest=manifest.digest,
        package_name=manifest.name,
        package_version=manifest.version,
        flavor=manifest.flavor.name,
        modelport_version=__version__,
    )
    facts = with_provenance(facts, provenance)
    return {
        "org.opencontainers.image.title": manifest.name,
        "org.opencontainers.image.version": manifest.version,
        "org.opencontainers.image.description": (
            f"modelport serving image for {manifest.name} {manifest.version}"
        ),
        "org.opencontainers.image.base.name": base_image,
        **labels(Platform.DOCKER, facts),
        LABEL_SAGEMAKER_PORT: "true",
    }


def runtime_stages(
    *,
    base_image: str,
    wheel_name: str,
    index_url: str | None = None,
    pip_cert: str | None = None,
    remove_from_venv: Sequence[str] = ("pip",),
) -> str:
    """The package-independent stages: ``build`` (the venv) and ``runtime`` (the image base).

    Every package served by the same modelport, requirements and base image shares them, so the
    layer cache (or the deployer's runtime image) makes them a one-time cost.

    Args:
        base_image: the image both stages start from; it needs ``python3`` with ``venv``.
        wheel_name: modelport's wheel, under ``wheels/`` in the context.
        index_url: the Python package index to install from (pip's ``--index-url``); None for
            pip's default. ``--build-arg PIP_INDEX_URL=...`` overrides it at build time.
        pip_cert: a CA bundle in the context that pip trusts (for an index behind a
            TLS-inspecting proxy); used in the build stage only, never in the image.
        remove_from_venv: distributions uninstalled from the venv once everything is in (the
            installer itself is not part of the runtime).
    """
    pip = [f"{VENV}/bin/python", "-m", "pip"]
    install = [*pip, "install", "--no-cache-dir", "--disable-pip-version-check"]
    env_lines = [
        f"PATH={VENV}/bin:$PATH",
        "PYTHONUNBUFFERED=1",
        "PYTHONDONTWRITEBYTECODE=1",
        "MODELPORT_HOST=0.0.0.0",
        f"MODELPORT_PACKAGE={PACKAGE_DIR}",
    ]
    cert = (
        "# The CA bundle pip trusts for the index; it stays in this stage, out of the image.\n"
        f"COPY {pip_cert} /tmp/modelport/{pip_cert}\n"
        f"ENV PIP_CERT=/tmp/modelport/{pip_cert}\n"
        if pip_cert
        else ""
    )
    uninstall = (
        f"RUN {_json_list([*pip, 'uninstall', '--yes', *remove_from_venv])}\n"
        if remove_from_venv
        else ""
    )
    healthcheck = [f"{VENV}/bin/python", ENTRYPOINT, "healthcheck"]
    return f"""\
ARG BASE_IMAGE={base_image}

# --- build: a venv with the runtime only (pinned), then modelport itself -----------------------
FROM ${{BASE_IMAGE}} AS build
# pip reads PIP_INDEX_URL: the only place this build downloads from.
ARG PIP_INDEX_URL={index_url or "https://pypi.org/simple"}
{cert}\
# A venv, never the system Python: works on python:*-slim and on Debian's python3 + python3-venv.
RUN ["python3", "-m", "venv", "{VENV}"]
COPY requirements.txt /tmp/modelport/requirements.txt
RUN {_json_list([*install, "--requirement", "/tmp/modelport/requirements.txt"])}
COPY wheels/ /tmp/modelport/wheels/
RUN {_json_list([*install, "--no-deps", "--no-index", f"/tmp/modelport/wheels/{wheel_name}"])}
{uninstall}\

# --- runtime: the venv, the entrypoint and a non-root user; the same for every package ---------
FROM ${{BASE_IMAGE}} AS runtime
RUN groupadd --system --gid {USER_ID} {USER_NAME} \\
 && useradd --no-log-init --system --uid {USER_ID} --gid {USER_ID} --home-dir {APP_DIR} \\
      --no-create-home --shell /usr/sbin/nologin {USER_NAME}
COPY --from=build {VENV} {VENV}
ENV {" ".join(env_lines)}
COPY entrypoint.py {ENTRYPOINT}
LABEL {LABEL_SAGEMAKER_PORT}="true"
USER {USER_ID}:{USER_ID}
WORKDIR {APP_DIR}
EXPOSE {CONTAINER_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\
  CMD {_json_list(healthcheck)}
ENTRYPOINT {_json_list([f"{VENV}/bin/python", ENTRYPOINT])}
CMD ["serve"]
"""


def package_stage(
    manifest: Manifest,
    *,
    from_image: str,
    base_image: str,
    provenance: Provenance | None = None,
    trust: str = "off",
) -> str:
    """The last stage: the package on top of the runtime, verified, and the image's labels.

    Args:
        manifest: the package's manifest (name, version, digest, flavor).
        from_image: what it starts from: ``runtime`` (the stage) or a runtime image.
        base_image: the base image, named in a label.
        provenance: the package's provenance, labelled too (:func:`image_labels`).
        trust: the signature policy the image enforces at every start (``warn``, ``require``)
            with the keys in the context's ``trusted-keys/``; ``off`` bakes none in.
    """
    env = [f"MODELPORT_PACKAGE_DIGEST={manifest.digest}"]
    if manifest.flavor.runs_code:
        # A python-flavor package runs the code it carries; building its image is the opt-in.
        env.append("MODELPORT_ALLOW_CODE=1")
    keys = ""
    if trust != "off":
        env += [f"MODELPORT_TRUST={trust}", f"MODELPORT_TRUSTED_KEYS={TRUSTED_KEYS_DIR}"]
        keys = f"COPY {TRUSTED_KEYS_CONTEXT}/ {TRUSTED_KEYS_DIR}/\n"
    return f"""\
# --- the package: copied read-only (owned by root), verified as the server's user --------------
FROM {from_image}
# The digest the package must have; the entrypoint checks it (and every file, and under a trust
# policy its signature) at each start.
ENV {" ".join(env)}
{keys}COPY package/ {PACKAGE_DIR}/
RUN {_json_list([f"{VENV}/bin/python", ENTRYPOINT, "verify"])}
{_label_lines(image_labels(manifest, base_image, provenance))}
"""


def _header(manifest: Manifest) -> str:
    return (
        f"# Serving image for the modelport package {manifest.name} {manifest.version}\n"
        f"# ({manifest.digest}),\n"
        "# written by `modelport dockerfile`. Build: "
        f"docker build -t {image_reference(manifest.name, manifest.version)} .\n"
    )


def render_dockerfile(manifest: Manifest, runtime: str, base_image: str, trust: str = "off") -> str:
    """The whole Dockerfile: a header, the ``runtime`` stages, then the package stage.

    Args:
        manifest: the package's manifest.
        runtime: the text of :func:`runtime_stages`.
        base_image: the base image, named in a label.
        trust: the signature policy baked in (see :func:`package_stage`).
    """
    final = package_stage(manifest, from_image="runtime", base_image=base_image, trust=trust)
    return f"{_header(manifest)}{runtime}\n{final}"
