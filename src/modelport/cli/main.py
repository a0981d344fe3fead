"""The ``modelport`` command: a lazy click group and the one place errors become exit codes.

Subcommands live in their own modules and are imported only when invoked, so ``modelport --help``
imports click and nothing heavy.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from modelport.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, ModelportError

# name -> ("module:attribute", one-line help shown by --help without importing the module).
COMMANDS: dict[str, tuple[str, str]] = {
    "pack": ("modelport.cli.package_commands:pack", "Pack a model into a modelport package."),
    "inspect": ("modelport.cli.package_commands:inspect", "Show a package's manifest."),
    "verify": ("modelport.cli.package_commands:verify", "Check every file of a package."),
    "predict": ("modelport.cli.package_commands:predict", "Predict with a package, in-process."),
    "serve": ("modelport.cli.serve_command:serve", "Serve a package over HTTP (every protocol)."),
    "batch": (
        "modelport.cli.batch_command:batch",
        "Score a file with a package, on this machine or on Spark.",
    ),
    "deploy": ("modelport.cli.deploy_commands:deploy", "Deploy a package to a target."),
    "deployments": (
        "modelport.cli.deploy_commands:deployments",
        "List, inspect, update, delete, query deployments.",
    ),
    "targets": ("modelport.cli.deploy_commands:targets", "List deploy targets, or describe one."),
    "dockerfile": (
        "modelport.cli.dockerfile_command:dockerfile",
        "Write a Docker build context for a package.",
    ),
    "push": (
        "modelport.cli.registry_commands:push",
        "Push a package to an OCI registry (ModelPack layout).",
    ),
    "pull": ("modelport.cli.registry_commands:pull", "Pull a package from an OCI registry."),
    "sign": (
        "modelport.cli.registry_commands:sign",
        "Sign a package (OpenSSF Model Signing).",
    ),
    "cache": (
        "modelport.cli.cache_command:cache",
        "List or clear the packages fetched from URIs.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, lazy ones included."""
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import a lazy command on first use."""
        if cmd_name in self._lazy:
            target, _ = self._lazy[cmd_name]
            module_name, attr = target.split(":")
            command = getattr(importlib.import_module(module_name), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands with their short help, importing none of them."""
        # Short help comes from the table above, so listing commands imports none of them.
        rows = [(name, self._lazy[name][1]) for name in sorted(self._lazy)]
        rows += [
            (name, cmd.get_short_help_str())
            for name, cmd in sorted(self.commands.items())
            if name not in self._lazy
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.version_option(package_name="modelport", prog_name="modelport")
def cli(debug: bool) -> None:
    """Package a trained model once; verify, predict, serve or deploy it anywhere."""


def _print_json_error(error: dict[str, Any]) -> None:
    """``--json``: print the error on stdout, unless the command already printed its result."""
    from modelport.cli._io import emit_json, printed_json

    if not printed_json():
        emit_json({"error": error})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and turn every error into an exit code; the single exit-code boundary.

    Exit codes: 0 ok, 1 error, 2 usage, 3 plugin/target problem, 4 invalid package, 130
    interrupted. An error is printed once, with its hint and reference
    (:meth:`ModelportError.render`); a command run with ``--json`` also prints it as
    ``{"error": {...}}`` on stdout. A command that asked to end at once
    (:func:`modelport.cli._io.end_at_once`) ends the process here, once that is said.
    """
    code = _outcome(list(sys.argv[1:] if argv is None else argv))
    io = sys.modules.get("modelport.cli._io")  # only a command that imported it can have asked
    if io is not None and io.ending_at_once():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _outcome(args: list[str]) -> int:
    debug = "--debug" in args or os.environ.get("MODELPORT_DEBUG") == "1"
    as_json = "--json" in args
    if as_json:  # _io is imported only here: 'modelport --help' stays as cheap as it can be
        from modelport.cli._io import printed_json

        printed_json(reset=True)
    try:
        cli.main(args=args, prog_name="modelport", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, --version
        return int(exc.exit_code)
    except click.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click's name for a Ctrl-C
            click.echo("Interrupted.", err=True)
            return EXIT_INTERRUPTED
        click.echo("Aborted.", err=True)
        return EXIT_ERROR
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except ModelportError as exc:
        if debug:
            raise
        click.echo(exc.render(), err=True)
        if as_json:
            _print_json_error(exc.to_dict())
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        hint = "This is a bug in modelport or a plugin; run again with --debug for the traceback."
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc}\n{hint}", err=True)
        if as_json:
            error = {"type": type(exc).__name__, "message": str(exc), "hint": hint}
            _print_json_error({**error, "reference": None, "exit_code": EXIT_ERROR})
        return EXIT_ERROR
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
