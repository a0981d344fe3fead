"""``modelport deploy | deployments ... | targets``: deploying packages through target plugins.

Every command gets its target from :func:`modelport.deployers.connect`, the same call a Python
program makes: targets are found through the ``modelport.deployers.v1`` entry-point group
(:mod:`modelport.plugins.registry`) and imported only when selected. Errors are
:class:`~modelport.errors.ModelportError` subclasses (targets translate their SDK's exceptions
through :mod:`modelport.deployers.kit.errors`); ``modelport.cli.main`` turns them into exit codes
(2 for bad options and config, 3 for targets that are unknown, broken or miss an extra). An
exception a target does not translate is reported as a bug (exit 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from modelport.cli._io import (
    emit_json,
    package_arg,
    print_table,
    read_input,
    read_json_input,
    storage_option,
    write_bytes,
    write_output,
)
from modelport.deployers.follow import WEBHOOK_SECRET_ENV
from modelport.errors import InputError, NotSupportedError, PluginError, UsageError

if TYPE_CHECKING:
    from modelport.deployers.base import Deployer, Deployment
    from modelport.deployers.kit.progress import Progress, ProgressEvent
    from modelport.model_format.package import Package

F = TypeVar("F", bound=Callable[..., Any])


# --- shared options -------------------------------------------------------------------------


def _target_options(func: F) -> F:
    """``-t/--target``, ``-C key=value`` and ``--config-file``, shared by every verb."""
    options = [
        click.option(
            "-t",
            "--target",
            "target",
            required=True,
            metavar="TARGET[:URI]",
            help="Deploy target (see 'modelport targets'); MLflow-style URIs such as "
            "sagemaker:/eu-west-1 pass the part after ':' to the target.",
        ),
        click.option(
            "-C",
            "--config",
            "config_pairs",
            multiple=True,
            metavar="KEY=VALUE",
            help="Target option (repeat); see 'modelport targets help TARGET'.",
        ),
        click.option(
            "--config-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Target options from a flat TOML or JSON table; -C and env vars win.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)


def _render(event: ProgressEvent) -> None:
    """Show one progress event on stderr (never mixed into --json output)."""
    if event.kind == "step":
        click.secho(f"==> {event.step}: {event.message}", err=True, bold=True)
    elif event.kind == "warn":
        click.secho(event.text(), err=True, fg="yellow")
    else:
        click.secho(f"    {event.text()}", err=True, dim=True)


def _progress() -> Progress:
    """Everything on a terminal; otherwise only warnings."""
    from modelport.deployers.kit.progress import Progress

    if sys.stderr.isatty():
        return Progress(_render)
    return Progress(lambda event: _render(event) if event.kind == "warn" else None)


def _make_deployer(
    target: str, config_pairs: tuple[str, ...], config_file: Path | None
) -> Deployer[Any]:
    """The target, configured from every source: :func:`modelport.deployers.connect`."""
    from modelport.deployers.config import parse_assignments
    from modelport.deployers.connect import connect

    return connect(
        target,
        parse_assignments(config_pairs),
        config_file=config_file,
        progress=_progress(),
        options_name="-C",
    )


@contextlib.contextmanager
def _loaded(
    path: Path,
    allow_code: bool,
    expect_digest: str | None,
    *,
    source: str,
    trust: str | None = None,
    trusted_key: str | None = None,
) -> Iterator[Package]:
    """The package, verified, pinned and its signature checked before any target step runs.

    ``expect_digest`` pins it; the trust policy (flags over the environment) checks who signed it.

    The policy, given by flags or the environment, is also what an image built meanwhile bakes
    in (:func:`modelport.image.context.write_context` reads it): the container checks the
    signature again at every start.
    """
    from modelport.model_format.locate import load
    from modelport.model_format.manifest import expected_digest
    from modelport.model_format.signing import TrustPolicy

    expected = None if expect_digest is None else expected_digest(expect_digest, "--expect-digest")
    with _trust_environment(trust, trusted_key):
        policy = TrustPolicy.from_env(os.environ)
        package = load(
            path,
            allow_code=allow_code,
            expected_digest=expected,
            trust=policy,
            doing=f"deploy {source}",
            source=source,
        )
        try:
            yield package
        finally:
            package.close()


@contextlib.contextmanager
def _trust_environment(trust: str | None, trusted_key: str | None) -> Iterator[None]:
    """``--trust``/``--trusted-key`` as ``MODELPORT_TRUST``/``MODELPORT_TRUSTED_KEYS`` meanwhile."""
    from modelport.model_format.signing import KEYS_ENV, TRUST_ENV

    given = {TRUST_ENV: trust, KEYS_ENV: trusted_key}
    before = {k: os.environ.get(k) for k in given}
    for key, value in given.items():
        if value is None:
            continue
        if key == KEYS_ENV:  # the image build copies them: absolute, whatever the cwd
            os.environ[key] = os.pathsep.join(
                str(Path(v).resolve()) for v in value.split(os.pathsep)
            )
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _show(deployment: Deployment, as_json: bool) -> None:
    """Print a deployment: its JSON record, or a few readable lines."""
    if as_json:
        emit_json(deployment.to_dict())
        return
    d = deployment
    colour = {"ready": "green", "failed": "red"}.get(d.status.value, "yellow")
    click.echo(f"Deployment {d.name} on {d.target}: " + click.style(d.status.value, fg=colour))
    click.echo(f"  endpoint: {d.endpoint or '-'}")
    click.echo(f"  package:  {d.package_digest}")
    click.echo(f"  created:  {d.created_at.isoformat()}")
    click.echo(f"  updated:  {d.updated_at.isoformat()}")
    for key, value in d.details.items():
        if value is not None:
            click.echo(f"  {key}: {value}")


_ALLOW_CODE = click.option(
    "--allow-code",
    is_flag=True,
    help="Allow a package that runs the code it carries (python flavor); only if you trust it.",
)
_TRUST = (
    click.option(
        "--trust",
        type=click.Choice(["off", "warn", "require"]),
        help="Signature policy: require refuses an unsigned or unverified package (exit 4), "
        "warn logs it; the image built checks it again at every start. [default: "
        "$MODELPORT_TRUST, else off]",
    ),
    click.option(
        "--trusted-key",
        "trusted_key",
        metavar="PEM",
        help="Public key(s) or CA certificate(s) a signature must chain to: a file or a "
        "directory (also $MODELPORT_TRUSTED_KEYS).",
    ),
)


def _trust_options(func: Any) -> Any:
    for option in reversed(_TRUST):
        func = option(func)
    return func


_EXPECT_DIGEST = click.option(
    "--expect-digest",
    "expect_digest",
    metavar="sha256:HEX",
    help="Deploy only the package with this digest (what 'modelport verify' prints); exit 4 "
    "before any step otherwise.",
)


def _follow_options(func: F) -> F:
    """How a follower polls the registry and where it listens for MLflow's webhooks."""
    options = [
        click.option(
            "--poll-interval",
            "poll_interval",
            type=click.FloatRange(min=0.1),
            default=60.0,
            show_default=True,
            help="Seconds between two questions to the registry.",
        ),
        click.option(
            "--webhook-port",
            type=click.IntRange(min=0, max=65535),
            help="Listen for MLflow's model_version_alias.created webhooks on this port (0: any "
            f"free one); the secret comes from ${WEBHOOK_SECRET_ENV}.",
        ),
        click.option(
            "--webhook-host",
            default="127.0.0.1",
            show_default=True,
            help="Address the webhook endpoint listens on.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _follow(
    deployer: Deployer[Any],
    name: str,
    uri: str,
    *,
    allow_code: bool,
    as_json: bool,
    poll_interval: float,
    webhook_host: str,
    webhook_port: int | None,
) -> None:
    """Run a follower in the foreground until SIGTERM or Ctrl-C, printing what it does."""
    import os
    import signal

    from modelport.deployers.follow import Follower, FollowEvent

    def report(event: FollowEvent) -> None:
        if as_json:
            click.echo(json.dumps(event.to_dict()))
            return
        what = " ".join(filter(None, [event.version and f"version {event.version}", event.message]))
        click.echo(
            f"{event.at[:19]}Z {event.kind}: {what}",
            err=event.kind.endswith(("failed", "error", "refused")),
        )

    follower = Follower(
        deployer,
        name,
        uri,
        interval_s=poll_interval,
        report=report,
        webhook_secret=os.environ.get(WEBHOOK_SECRET_ENV),
        webhook_host=webhook_host,
        webhook_port=webhook_port,
        allow_code=allow_code,
    )
    previous = {
        sig: signal.signal(sig, lambda *_: follower.stop())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        follower.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- deploy ---------------------------------------------------------------------------------


def _print_plan(deployer: Deployer[Any], name: str, package: Package, as_json: bool) -> None:
    """``deploy --dry-run``: the steps a real create would run, touching nothing."""
    actions = deployer.plan(name, package)
    if as_json:
        emit_json(
            {
                "dry_run": True,
                "target": deployer.name,
                "name": name,
                "package_digest": package.digest,
                "actions": [a.to_dict() for a in actions],
            }
        )
        return
    click.echo(
        f"Dry run: deploying {package.name} {package.version} ({package.digest}) "
        f"to {deployer.name} as {name!r} would:"
    )
    for i, action in enumerate(actions, 1):
        step = f"{action.step} " if action.step else ""
        click.echo(f"  {i}. {step}[{action.kind}] {action.description}")
        for key, value in action.details.items():
            if key == "calls" and isinstance(value, list):
                # One line per AWS/REST call: its name, then its exact parameters as JSON.
                for call in value:
                    params = json.dumps(call.get("params", {}), default=str)
                    click.echo(f"       call {call.get('call')} {params}")
                continue
            if isinstance(value, dict) or (
                isinstance(value, list) and not all(isinstance(v, str) for v in value)
            ):
                shown = json.dumps(value, default=str)
            else:
                shown = " ".join(value) if isinstance(value, list) else value
            click.echo(f"       {key}: {shown}")
    click.echo("Nothing was created.")


@click.command()
@click.argument("package_ref", metavar="PKG")
@_target_options
@click.option("-n", "--name", required=True, help="Name of the new deployment.")
@click.option("--dry-run", is_flag=True, help="Print the steps a deploy would run; touch nothing.")
@click.option("--no-wait", is_flag=True, help="Return once started, without waiting for ready.")
@click.option(
    "--follow",
    is_flag=True,
    help="PKG is models:/NAME@ALIAS: then keep the deployment on the version the alias names "
    "(see 'modelport deployments follow'); runs until SIGTERM.",
)
@_follow_options
@_ALLOW_CODE
@_EXPECT_DIGEST
@_trust_options
@storage_option
@_json_option
def deploy(
    package_ref: str,
    target: str,
    config_pairs: tuple[str, ...],
    config_file: Path | None,
    name: str,
    dry_run: bool,
    no_wait: bool,
    allow_code: bool,
    expect_digest: str | None,
    storage_options: tuple[str, ...],
    as_json: bool,
    follow: bool,
    poll_interval: float,
    webhook_host: str,
    webhook_port: int | None,
    trust: str | None,
    trusted_key: str | None,
) -> None:
    """Deploy the package PKG to a target as a new deployment NAME.

    PKG is a path, a storage URI (s3://, gs://, az://, webhdfs:// …) or an MLflow URI
    (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN/PATH). Blocks until the deployment is
    ready (progress is shown on a terminal) unless --no-wait. Options come from --config-file,
    MODELPORT_<TARGET>_<KEY> env vars, the target URI and -C key=value, the later winning. A
    failed deploy removes what it made.
    """
    if follow:
        from modelport.deployers.follow import check_followable

        check_followable(package_ref)
        if dry_run or expect_digest:
            raise UsageError(
                "--follow deploys what the alias names: no --dry-run, no --expect-digest"
            )
    # Fetched and checked before the target is even looked up.
    package_path = package_arg(package_ref, storage_options, allow_code=allow_code)
    deployer = _make_deployer(target, config_pairs, config_file)
    deployer.check_name(name)
    with _loaded(
        package_path,
        allow_code,
        expect_digest,
        source=package_ref,
        trust=trust,
        trusted_key=trusted_key,
    ) as package:
        if dry_run:
            _print_plan(deployer, name, package, as_json)
            return
        deployment = deployer.create(name, package, wait=not no_wait)
    if follow and as_json:
        # One JSON object per line from here on: the deployment, then the follower's events.
        click.echo(json.dumps({"kind": "created", "deployment": deployment.to_dict()}))
    else:
        _show(deployment, as_json)
    if follow:
        _follow(
            deployer,
            name,
            package_ref,
            allow_code=allow_code,
            as_json=as_json,
            poll_interval=poll_interval,
            webhook_host=webhook_host,
            webhook_port=webhook_port,
        )


# --- deployments ----------------------------------------------------------------------------


@click.group()
def deployments() -> None:
    """List, inspect, update, promote, roll back, delete and query deployments on a target."""


@deployments.command("list")
@_target_options
@_json_option
def list_deployments(
    target: str, config_pairs: tuple[str, ...], config_file: Path | None, as_json: bool
) -> None:
    """List the deployments on a target."""
    deployer = _make_deployer(target, config_pairs, config_file)
    found = list(deployer.list())
    if as_json:
        emit_json([d.to_dict() for d in found])
        return
    if not found:
        click.echo(f"No deployments on target {deployer.name}.")
        return
    print_table(
        [
            [
                d.name,
                d.status.value,
                d.endpoint or "-",
                d.package_digest[:19],
                d.updated_at.isoformat(),
            ]
            for d in found
        ],
        ["NAME", "STATUS", "ENDPOINT", "PACKAGE", "UPDATED"],
    )


@deployments.command("get")
@_target_options
@click.option("-n", "--name", required=True, help="The deployment.")
@_json_option
def get_deployment(
    target: str, config_pairs: tuple[str, ...], config_file: Path | None, name: str, as_json: bool
) -> None:
    """Show one deployment and its health."""
    _show(_make_deployer(target, config_pairs, config_file).get(name), as_json)


@deployments.command("update")
@click.argument("package_ref", metavar="PKG")
@_target_options
@click.option("-n", "--name", required=True, help="The deployment to switch to PKG.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Return once the update is under way; 'deployments get' says when it is done.",
)
@_ALLOW_CODE
@_EXPECT_DIGEST
@_trust_options
@storage_option
@_json_option
def update_deployment(
    package_ref: str,
    target: str,
    config_pairs: tuple[str, ...],
    config_file: Path | None,
    name: str,
    no_wait: bool,
    allow_code: bool,
    expect_digest: str | None,
    storage_options: tuple[str, ...],
    as_json: bool,
    trust: str | None,
    trusted_key: str | None,
) -> None:
    """Switch deployment NAME to the package PKG (blue/green where the target allows).

    An unchanged package digest changes nothing; a failed update leaves the old version serving.
    """
    package_path = package_arg(package_ref, storage_options, allow_code=allow_code)
    deployer = _make_deployer(target, config_pairs, config_file)
    if no_wait and not deployer.update_can_skip_waiting():
        raise NotSupportedError(
            f"target {deployer.name!r} cannot update without waiting",
            hint="run the update without --no-wait",
        )
    with _loaded(
        package_path,
        allow_code,
        expect_digest,
        source=package_ref,
        trust=trust,
        trusted_key=trusted_key,
    ) as package:
        if no_wait:
            deployment = deployer.update(name, package, wait=False)
        else:
            deployment = deployer.update(name, package)  # a v1 target's update takes no wait
    _show(deployment, as_json)


@deployments.command("follow")
@click.argument("uri", metavar="URI")
@_target_options
@click.option("-n", "--name", required=True, help="The deployment to keep on URI's version.")
@_follow_options
@_ALLOW_CODE
@_json_option
def follow_deployment(
    uri: str,
    target: str,
    config_pairs: tuple[str, ...],
    config_file: Path | None,
    name: str,
    poll_interval: float,
    webhook_host: str,
    webhook_port: int | None,
    allow_code: bool,
    as_json: bool,
) -> None:
    """Keep deployment NAME on the version URI (models:/NAME@ALIAS or /latest) names.

    Asks the registry every --poll-interval seconds, and at once on an MLflow webhook
    (model_version_alias.created, HMAC-signed with $MODELPORT_WEBHOOK_SECRET) when
    --webhook-port is given. A new version is packed, its input example run through it, then
    the deployment is updated; a version that fails its example is not deployed, and a failed
    update leaves the old version serving. One follower per deployment; stop it with SIGTERM
    or Ctrl-C. --json prints one JSON event per line.
    """
    from modelport.deployers.follow import check_followable

    check_followable(uri)
    deployer = _make_deployer(target, config_pairs, config_file)
    deployer.get(name)  # it must exist: following never creates
    _follow(
        deployer,
        name,
        uri,
        allow_code=allow_code,
        as_json=as_json,
        poll_interval=poll_interval,
        webhook_host=webhook_host,
        webhook_port=webhook_port,
    )


def _traffic_command(verb: str, summary: str) -> click.Command:
    """``deployments promote`` and ``deployments rollback``: the same shape, another verb."""

    @_target_options
    @click.option("-n", "--name", required=True, help="The deployment.")
    @_json_option
    def command(
        target: str,
        config_pairs: tuple[str, ...],
        config_file: Path | None,
        name: str,
        as_json: bool,
    ) -> None:
        deployer = _make_deployer(target, config_pairs, config_file)
        _show(getattr(deployer, verb)(name), as_json)

    command.__doc__ = summary
    return click.command(verb)(command)


deployments.add_command(
    _traffic_command(
        "promote",
        "Send all traffic to the newest version of NAME and remove the older one.\n\n"
        "For targets that split traffic between versions (a canary); others exit 2.",
    )
)
deployments.add_command(
    _traffic_command(
        "rollback",
        "Send all traffic back to the older version of NAME and remove the newer one.\n\n"
        "For targets that split traffic between versions (a canary); others exit 2.",
    )
)


@deployments.command("delete")
@_target_options
@click.option("-n", "--name", required=True, help="The deployment.")
@_json_option
def delete_deployment(
    target: str, config_pairs: tuple[str, ...], config_file: Path | None, name: str, as_json: bool
) -> None:
    """Delete a deployment and everything the target made for it (no error if absent)."""
    deployer = _make_deployer(target, config_pairs, config_file)
    deployer.delete(name)
    if as_json:
        emit_json({"deleted": name, "target": deployer.name})
    else:
        click.echo(f"Deleted deployment {name} on {deployer.name} (if it existed).")


@deployments.command("logs")
@_target_options
@click.option("-n", "--name", required=True, help="The deployment.")
@click.option("--tail", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--all", "all_lines", is_flag=True, help="Print the whole log.")
def deployment_logs(
    target: str,
    config_pairs: tuple[str, ...],
    config_file: Path | None,
    name: str,
    tail: int,
    all_lines: bool,
) -> None:
    """Print a deployment's most recent log lines."""
    deployer = _make_deployer(target, config_pairs, config_file)
    for line in deployer.logs(name, tail=None if all_lines else tail):
        click.echo(line)


@deployments.command("predict")
@_target_options
@click.option("-n", "--name", required=True, help="The deployment.")
@click.option(
    "-i",
    "--input",
    "input_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help='JSON body ({"inputs": ...}, {"instances": [...]}, dataframe_split, ...); - for stdin.',
)
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the predictions here instead of printing them.",
)
@click.option(
    "--content-type",
    help="Send INPUT as it is, with this media type (text/csv, application/x-npy, ...), "
    "where the target can; default: INPUT is a JSON object.",
)
@click.option("--accept", help="The answer's media type to ask for (with --content-type).")
def predict_deployment(
    target: str,
    config_pairs: tuple[str, ...],
    config_file: Path | None,
    name: str,
    input_path: Path,
    output_path: Path | None,
    content_type: str | None,
    accept: str | None,
) -> None:
    """Send INPUT to a deployment and print {"predictions": ...} (as 'modelport predict' does).

    With --content-type, INPUT is sent as it is and the answer printed as it comes (binary
    answers need -o).
    """
    deployer = _make_deployer(target, config_pairs, config_file)
    if content_type is not None:
        raw = read_input(input_path)
        answer_body, answer_type = deployer.predict_body(
            name, raw, content_type=content_type, accept=accept
        )
        if output_path is not None:
            write_bytes(answer_body, output_path)
            return
        try:
            click.echo(answer_body.decode("utf-8").rstrip("\n"))
        except UnicodeDecodeError:
            raise UsageError(
                f"the answer is binary ({answer_type}): write it to a file with -o"
            ) from None
        return
    if accept is not None:
        raise UsageError("--accept goes with --content-type")
    body = read_json_input(input_path)
    if not isinstance(body, dict):
        raise InputError('the input must be a JSON object such as {"inputs": ...}')
    answer = deployer.predict(name, body)
    write_output(json.dumps(answer, allow_nan=True), output_path)


# --- targets --------------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@click.option("--check", is_flag=True, help="Also import each target to prove it loads.")
@_json_option
@click.pass_context
def targets(ctx: click.Context, check: bool, as_json: bool) -> None:
    """List deploy targets with their distribution, version and status.

    Listing imports no target: the status (ok, missing extra, broken) comes from installed
    metadata; --check also imports each target and exits with 3 if one is broken.
    """
    if ctx.invoked_subcommand is not None:
        return
    from modelport.plugins.registry import check_all, discover

    infos = check_all() if check else discover()
    if as_json:
        emit_json([i.to_dict() for i in infos])
    elif not infos:
        click.echo("No deploy targets installed.")
    else:
        print_table(
            [[i.name, i.status, i.distribution, i.version] for i in infos],
            ["TARGET", "STATUS", "DISTRIBUTION", "VERSION"],
        )
        for info in infos:
            if info.status != "ok":
                fix = f"; install it with: {info.install}" if info.install else ""
                click.echo(f"  {info.name} ({info.distribution}): {info.problem}{fix}")
    if check and any(i.status == "broken" for i in infos):
        broken = ", ".join(sorted({i.name for i in infos if i.status == "broken"}))
        raise PluginError(f"broken targets: {broken}")


@targets.command("help")
@click.argument("target")
@_json_option
def target_help(target: str, as_json: bool) -> None:
    """Describe TARGET: what it does, and every option with its type, default and meaning."""
    import inspect
    import textwrap

    from modelport.deployers.base import describe_config
    from modelport.deployers.config import env_var_name, fields_of
    from modelport.plugins.registry import get_info, load_target, parse_target

    name, _ = parse_target(target)
    info = get_info(name)
    cls = load_target(name)
    doc = inspect.cleandoc(cls.__doc__ or "").replace("``", "").strip() or "(no description)"
    fields = fields_of(cls.config_class, cls.name)
    if as_json:
        emit_json(
            {
                **info.to_dict(),
                "doc": doc,
                "options": describe_config(cls),
                "logs": cls.supports_logs(),
                "traffic": cls.supports_traffic(),
                "sources": ["--config-file", "environment", "target URI", "-C"],
            }
        )
        return
    click.echo(f"Target {cls.name}  ({info.distribution} {info.version}, {info.value})")
    click.echo()
    click.echo(doc)
    click.echo()
    if not fields:
        click.echo("Options: none.")
    else:
        click.echo("Options (-C key=value):")
        for f in fields:
            click.echo(f"  {f.name}  [{f.type_name}]  default: {f.default_text}")
            if f.help:
                click.echo(
                    textwrap.fill(f.help, 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
                )
            click.echo(f"      env: {f.env_var}")
    click.echo()
    click.echo("Where options come from (later wins):")
    click.echo("  1. --config-file FILE.toml|FILE.json  (a flat table: key = value)")
    click.echo(f"  2. environment variables {env_var_name(cls.name, '')}<KEY>")
    click.echo(f"  3. a target URI: -t {cls.name}:<uri>, when the target takes one")
    click.echo("  4. -C key=value on the command line")
    verbs = "create, update, delete, get, list, predict"
    verbs += ", logs" if cls.supports_logs() else ""
    verbs += ", promote, rollback" if cls.supports_traffic() else ""
    click.echo()
    click.echo(f"Verbs: {verbs}.")
