"""``modelport serve``: the REST server.

The options are :data:`modelport.serving.options.SERVE_OPTIONS`, the same table every image's
entrypoint parses, so ``modelport serve --workers 2`` and ``docker run IMAGE serve --workers 2``
cannot drift apart. Every option also reads its ``MODELPORT_*`` environment variable, for images
and cloud configs. This module imports no web framework: the server modules are imported when
the command runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from modelport.cli._io import storage_option
from modelport.errors import UsageError
from modelport.serving.options import PACKAGE_ENV, SERVE_OPTIONS, ServeOption


def _click_option(option: ServeOption) -> Callable[[Any], Any]:
    """One table entry as a click option; its bounds are checked by the table's own check."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and option.kind is not bool:
            try:
                option.check(value, option.flag)
            except UsageError as exc:
                raise click.BadParameter(str(exc).removeprefix(f"{option.flag}: ")) from None
        return value

    kind: Any = {int: click.INT, float: click.FLOAT, str: click.STRING}.get(option.kind)
    if option.choices:
        kind = click.Choice(option.choices)
    return click.option(
        option.flag,
        option.name,
        type=kind,
        is_flag=option.kind is bool,
        envvar=option.env,
        default=option.default,
        show_default=option.default is not None and option.kind is not bool,
        callback=check,
        help=option.help,
    )


def _serve_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(SERVE_OPTIONS):
        func = _click_option(option)(func)
    return func


@click.command(context_settings={"max_content_width": 100})
@click.argument("package", metavar="[PKG]", required=False, envvar=PACKAGE_ENV)
@_serve_options
@storage_option
def serve(package: str | None, storage_options: tuple[str, ...], **values: Any) -> None:
    """Serve PKG over HTTP: SageMaker, KServe V2, Vertex AI and Azure ML routes in one server.

    PKG is a package directory or .mport archive, a storage URI (s3://, gs://, az://, …) or an
    MLflow URI (models:/NAME@ALIAS …), fetched once into the package cache (default:
    $MODELPORT_PACKAGE). Stop with SIGTERM or Ctrl-C: in-flight requests finish first.
    """
    from modelport.cli._io import package_arg
    from modelport.serving.options import serve_config
    from modelport.serving.server import run

    if package is not None:  # none: serve_config says how to name one
        allow = bool(values.get("allow_code"))
        package = str(package_arg(package, storage_options, allow_code=allow))
    run(serve_config(package, values, os.environ))
