"""The entrypoint of every modelport serving image (``entrypoint.py`` in the build context).

The image runs ``ENTRYPOINT ["/opt/venv/bin/python", "/opt/modelport/entrypoint.py"]`` with
``CMD ["serve"]``, so all of these start the server on the package baked into the image:

- ``docker run IMAGE`` (Vertex AI, Azure ML: the image's own entrypoint and command);
- ``docker run IMAGE serve`` (SageMaker: ``serve`` replaces the command);
- ``docker run IMAGE serve --workers 2`` or ``docker run IMAGE --workers 2`` (the options of
  ``modelport serve``, from the same table: :mod:`modelport.serving.options`).

The package is ``$MODELPORT_PACKAGE``, else the one baked in; a *runtime* image (the shared
image without a package) serves the package SageMaker unpacked from ``model.tar.gz`` into
``/opt/ml/model``, or the model asset Azure ML mounted at ``$AZUREML_MODEL_DIR``.

Before serving, the package is verified: every file against the manifest, and the manifest against
the digest the image was built for (``MODELPORT_PACKAGE_DIGEST``, set by the Dockerfile) and the
one whoever runs the container pins (``MODELPORT_EXPECT_DIGEST``, as ``modelport serve
--expect-digest``); under a trust policy (``MODELPORT_TRUST``, baked in by an image built
under one) its signature too, against ``MODELPORT_TRUSTED_KEYS``. A package altered after the
build (a derived image, a volume mounted over it) makes the container exit with status 4 and one
line saying why, instead of serving a model nobody built.

Two more commands, for the image's own use:

- ``verify``: the same checks, then exit (the Dockerfile runs it at build time);
- ``healthcheck``: exit 0 when the server on this container's port answers ``/ping`` with 200
  (the Dockerfile's ``HEALTHCHECK``; plain urllib, so the image needs no curl).

This file imports only the standard library and modelport, modelport's heavy modules only when
they are needed, and never ``modelport.cli``: it runs the server itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

PACKAGE_ENV = "MODELPORT_PACKAGE"
DIGEST_ENV = "MODELPORT_PACKAGE_DIGEST"
#: The digest the person running the container expects (the serve option's variable).
EXPECT_DIGEST_ENV = "MODELPORT_EXPECT_DIGEST"
DEFAULT_PACKAGE = "/opt/modelport/package"
#: The route the image's HEALTHCHECK probes: 200 only once the model is loaded and warmed up.
READY_ROUTE = "/ping"
EXIT_REFUSED = 4


def package_problems(
    path: str, expected_digest: str | None, pinned_digest: str | None = None
) -> list[str]:
    """Everything wrong with the package at ``path``: altered, missing or extra files, wrong digest.

    Args:
        path: the package directory (or archive).
        expected_digest: the digest the image was built for; None skips that check.
        pinned_digest: the digest ``MODELPORT_EXPECT_DIGEST`` pins (already checked for form);
            None skips that check.

    Returns:
        One line per problem; empty when the package is intact.
    """
    from modelport.errors import PackageError
    from modelport.model_format.package import verify

    # verify(), not open_package: every problem is listed (both digests too), none raised, and
    # the server opens the package itself right after (serving.server.prepared_package).
    try:
        report = verify(path)
    except PackageError as exc:
        return [str(exc)]
    problems = list(report.problems)
    if expected_digest and report.manifest.digest != expected_digest:
        problems.append(
            f"manifest digest {report.manifest.digest} is not the {expected_digest} "
            "this image was built for"
        )
    if pinned_digest and report.manifest.digest != pinned_digest:
        problems.append(
            f"manifest digest {report.manifest.digest} is not the {pinned_digest} "
            f"{EXPECT_DIGEST_ENV} expects"
        )
    return problems


def healthcheck(env: Mapping[str, str], timeout_s: float = 2.0) -> int:
    """Probe the ready route of the server in this container; 0 when it answers 200, else 1."""
    from modelport.deployers.kit.http import http  # never through a proxy from $HTTP_PROXY
    from modelport.serving.config import resolve_port

    try:
        port = resolve_port(None, env)
        status, _ = http("GET", f"http://127.0.0.1:{port}{READY_ROUTE}", timeout=timeout_s)
    except (OSError, ValueError) as exc:
        print(f"modelport healthcheck: not ready: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bad port variable raises modelport's UsageError
        print(f"modelport healthcheck: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"modelport healthcheck: not ready: HTTP {status}", file=sys.stderr)
        return 1
    return 0


def default_package(env: Mapping[str, str] | None = None) -> str:
    """The package baked into the image; else, in a runtime image, one a cloud mounted.

    SageMaker's ``/opt/ml/model``, or Azure ML's model asset at ``$AZUREML_MODEL_DIR``
    (:func:`modelport.serving.options.mounted_package`).
    """
    from modelport.serving.options import mounted_package

    if os.path.isdir(DEFAULT_PACKAGE):
        return DEFAULT_PACKAGE
    mounted = mounted_package(os.environ if env is None else env)
    return str(mounted) if mounted is not None else DEFAULT_PACKAGE


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the image's command; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    if args[:1] == ["healthcheck"]:
        return healthcheck(env)
    if any(arg in ("-h", "--help") for arg in args):
        from modelport.serving.options import usage

        print(f"Usage: docker run IMAGE [serve] [OPTIONS]\n\n{usage()}")
        return 0

    package = env.get(PACKAGE_ENV) or DEFAULT_PACKAGE
    if package == DEFAULT_PACKAGE:
        # The image's own default (its Dockerfile sets it): a runtime image has nothing there,
        # and serves what a cloud mounted instead.
        package = default_package(env)
    verify_only = args[:1] == ["verify"]
    from modelport.errors import UsageError
    from modelport.model_format.manifest import expected_digest

    try:
        pinned = env.get(EXPECT_DIGEST_ENV, "").strip()
        pinned = expected_digest(pinned, EXPECT_DIGEST_ENV) if pinned else ""
    except UsageError as exc:
        print(exc.render(), file=sys.stderr, flush=True)
        return exc.exit_code
    problems = package_problems(package, env.get(DIGEST_ENV) or None, pinned or None)
    if problems:
        # One line first: what a log viewer shows, and what a person needs to know.
        print(
            f"modelport: refusing to start: the package at {package} failed verification "
            f"({len(problems)} problem(s)): {problems[0]}",
            file=sys.stderr,
            flush=True,
        )
        for problem in problems[1:]:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_REFUSED
    if verify_only:
        # At build time too: an image is not built around a package its policy would refuse.
        from modelport.errors import ModelportError
        from modelport.model_format.signing import TrustPolicy, enforce

        try:
            enforce(package, TrustPolicy.from_env(env), doing="build an image of it")
        except ModelportError as exc:
            print(exc.render(), file=sys.stderr, flush=True)
            return exc.exit_code
        print(f"modelport: package at {package} verified", file=sys.stderr)
        return 0

    # SageMaker runs `docker run IMAGE serve`: the leading `serve` is the command, not a path.
    if args[:1] == ["serve"]:
        args = args[1:]
    from modelport.errors import ModelportError
    from modelport.serving.options import parse_args, serve_config
    from modelport.serving.server import run

    # In-process, so Python and modelport start once; the server handles SIGTERM as PID 1.
    try:
        run(serve_config(package, parse_args(args, env), env))
    except ModelportError as exc:
        print(exc.render(), file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
