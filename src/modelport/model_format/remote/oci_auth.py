"""Registry credentials as container tools find them, and the challenges registries send.

Where credentials for ``HOST[:PORT]`` are looked up, in this order (the first file that has an
entry for the registry wins, as podman and skopeo do):

1. ``$REGISTRY_AUTH_FILE``;
2. ``$XDG_RUNTIME_DIR/containers/auth.json`` (podman's, buildah's and skopeo's);
3. ``$DOCKER_CONFIG/config.json``, or ``~/.docker/config.json`` without ``DOCKER_CONFIG``.

In each file, ``credHelpers[HOST]`` names a credential helper for that registry; else an
``auths`` entry (keyed ``HOST[:PORT]``, also ``https://HOST/…`` as older docker wrote them)
holds ``auth`` (base64 ``user:password``) or an ``identitytoken`` (an OAuth2 refresh token);
else ``credsStore`` names a helper for every registry. A helper is
``docker-credential-NAME get`` with the server on stdin and ``{"Username", "Secret"}`` on stdout
(a ``<token>`` user name: the secret is an identity token).

Secrets never appear in a message, a log line or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelport.errors import SourceError

#: The environment variable naming podman's auth file (the first file read).
AUTH_FILE_ENV = "REGISTRY_AUTH_FILE"
#: How long a credential helper may take to answer.
HELPER_TIMEOUT_S = 30.0
#: Docker Hub's names: its credentials are filed under the old index URL.
_DOCKER_HUB = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class Credential:
    """What a registry is logged in with.

    Attributes:
        username: the user name ("" with an identity token only).
        password: the password or personal token (never shown).
        identity_token: an OAuth2 refresh token for the registry's token server (never shown).
        source: where it came from: a file, or ``docker-credential-NAME``.
    """

    username: str
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = ""


@dataclass(frozen=True)
class Lookup:
    """The credential found for one registry (or None) and every place that was looked at.

    Attributes:
        credential: what was found, or None: talk to the registry anonymously.
        checked: the files (and helpers) consulted, in order, for an error's hint.
    """

    credential: Credential | None
    checked: tuple[str, ...]

    def hint(self, registry: str) -> str:
        """Where credentials were looked for and how to give some, for an error's hint."""
        where = ", ".join(self.checked) if self.checked else "nowhere (no auth file is set)"
        used = f"; used {self.credential.source}" if self.credential is not None else ""
        return (
            f"credentials for {registry} are read from {where}{used}; log in with "
            f"'docker login {registry}' or 'podman login {registry}', or point "
            f"{AUTH_FILE_ENV} at an auth.json"
        )


def auth_files(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The auth files read, in order (whether they exist or not)."""
    files: list[Path] = []
    if environ.get(AUTH_FILE_ENV):
        files.append(Path(environ[AUTH_FILE_ENV]))
    if environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    docker = environ.get("DOCKER_CONFIG")
    if docker:
        files.append(Path(docker) / "config.json")
    else:
        home = environ.get("HOME") or str(Path.home())
        files.append(Path(home) / ".docker" / "config.json")
    return files


def find_credential(registry: str, environ: Mapping[str, str] = os.environ) -> Lookup:
    """The credential for ``registry`` (``HOST[:PORT]``) from the files above, or None.

    Raises:
        SourceError: an auth file is not JSON, an entry cannot be decoded, or a credential
            helper is missing or fails (the message names the file or helper, never a secret).
    """
    checked: list[str] = []
    for path in auth_files(environ):
        checked.append(str(path))
        config = _read_config(path)
        if config is None:
            continue
        found = _from_config(config, registry, path, checked, environ)
        if found is not None:
            return Lookup(found, tuple(checked))
    return Lookup(None, tuple(checked))


def _read_config(path: Path) -> dict[str, object] | None:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceError(f"cannot read the registry auth file {path} ({exc.strerror})") from None
    try:
        config = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise SourceError(f"the registry auth file {path} is not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise SourceError(f"the registry auth file {path} is not a JSON object")
    return config


def _normal_key(key: str) -> str:
    """An ``auths`` key as ``host[:port]``: ``https://host/v1/`` and ``host`` are the same."""
    key = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", key.strip())
    return key.split("/", 1)[0].lower()


def _names(registry: str) -> set[str]:
    name = registry.lower()
    return set(_DOCKER_HUB) if name in _DOCKER_HUB else {name}


def _from_config(
    config: Mapping[str, object],
    registry: str,
    path: Path,
    checked: list[str],
    environ: Mapping[str, str],
) -> Credential | None:
    names = _names(registry)
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if _normal_key(str(key)) in names and isinstance(helper, str) and helper:
                return _run_helper(helper, str(key), checked, environ)
    auths = config.get("auths")
    if isinstance(auths, dict):
        for key, entry in auths.items():
            if _normal_key(str(key)) in names and isinstance(entry, dict):
                found = _from_entry(entry, path)
                if found is not None:
                    return found
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        server = registry
        if isinstance(auths, dict):  # the key docker login filed it under, if one is there
            server = next((str(k) for k in auths if _normal_key(str(k)) in names), registry)
        return _run_helper(store, server, checked, environ)
    return None


def _from_entry(entry: Mapping[str, object], path: Path) -> Credential | None:
    token = entry.get("identitytoken")
    auth = entry.get("auth")
    username = password = ""
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise SourceError(
                f"{path}: an 'auth' entry is not base64 of 'user:password'",
                hint="log in again with 'docker login' or 'podman login'",
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise SourceError(f"{path}: an 'auth' entry is not base64 of 'user:password'")
    elif isinstance(entry.get("username"), str):  # some tools write the fields apart
        username = str(entry["username"])
        password = str(entry.get("password") or "")
    if isinstance(token, str) and token:
        return Credential(username, password, token, source=str(path))
    if username or password:
        return Credential(username, password, source=str(path))
    return None  # an empty marker ({}): the credential lives in a helper


def _run_helper(
    name: str, server: str, checked: list[str], environ: Mapping[str, str]
) -> Credential | None:
    program = f"docker-credential-{name}"
    checked.append(program)
    found = shutil.which(program, path=environ.get("PATH"))
    if found is None:
        raise SourceError(
            f"the credential helper {program} is not on PATH",
            hint="install it, or remove credsStore/credHelpers from the Docker config",
        )
    try:
        result = subprocess.run(
            [found, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT_S,
            check=False,
            env=dict(environ),
        )
    except subprocess.TimeoutExpired:
        raise SourceError(
            f"the credential helper {program} did not answer within {HELPER_TIMEOUT_S:g} s"
        ) from None
    except OSError as exc:
        raise SourceError(f"cannot run the credential helper {program} ({exc.strerror})") from None
    if result.returncode != 0:
        said = result.stdout.decode("utf-8", "replace").strip()
        if "credentials not found" in said.lower():
            return None  # the helper knows nothing of this registry: anonymous
        # The helper's own words are about its store, never a secret of ours.
        raise SourceError(
            f"the credential helper {program} failed for {server} (exit {result.returncode}: "
            f"{said[:200] or result.stderr.decode('utf-8', 'replace').strip()[:200]})"
        )
    try:
        answer = json.loads(result.stdout)
        username, secret = str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError):
        raise SourceError(
            f"the credential helper {program} answered something other than "
            '{"Username": ..., "Secret": ...}'
        ) from None
    if username == "<token>":
        return Credential("", identity_token=secret, source=program)
    return Credential(username, secret, source=program)


# --- challenges -----------------------------------------------------------------------------

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: its scheme (lower case) and its parameters."""

    scheme: str
    params: Mapping[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse ``WWW-Authenticate``: ``Bearer realm="…",service="…",scope="…"``, ``Basic realm=…``.

    Several challenges in one header are told apart by a scheme word before parameters.
    """
    challenges: list[Challenge] = []
    rest = header.strip()
    while rest:
        match = re.match(r"([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)", rest)
        if match is None:
            break
        scheme, rest = match.group(1).lower(), rest[match.end() :]
        params: dict[str, str] = {}
        while rest and not re.match(r"[A-Za-z][A-Za-z0-9_-]*(?:\s+[A-Za-z0-9_.-]+\s*=|\s*$)", rest):
            param = _PARAM.match(rest)
            if param is None:
                rest = ""
                break
            value = param.group(2)
            value = re.sub(r"\\(.)", r"\1", value) if value is not None else param.group(3)
            params[param.group(1).lower()] = value
            rest = rest[param.end() :].lstrip()
        challenges.append(Challenge(scheme, params))
        rest = rest.lstrip(" ,")
    return challenges


def basic_header(credential: Credential) -> str:
    """The ``Authorization`` value of HTTP Basic authentication with ``credential``."""
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
