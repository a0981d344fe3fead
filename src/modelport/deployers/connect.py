"""The Python deploy API: :func:`connect` to a target, the same way the CLI does.

::

    from modelport.deployers import connect

    target = connect("sagemaker:/eu-west-1", role_arn="arn:aws:iam::123456789012:role/x")
    target.create("churn", modelport.load("churn.mport"))

The CLI is one caller of :func:`connect`; an Airflow task, a notebook or a Spark driver is another.
To use a target class without installing a distribution, :func:`~modelport.plugins.registry.
register` it first (``modelport.deployers.register``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from modelport.deployers.base import Deployer
    from modelport.deployers.kit.progress import Progress


def connect(
    target: str,
    options: Mapping[str, Any] | None = None,
    /,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | Callable[[str], None] | None = None,
    options_name: str = "keyword argument",
    **kwargs: Any,
) -> Deployer[Any]:
    """A configured deploy target.

    Options come from, lowest precedence first: ``config_file`` (a flat TOML or JSON table), the
    environment (``MODELPORT_<TARGET>_<KEY>``), the target URI, then ``options`` and keyword
    arguments. Values may be Python values (``instance_count=2``) or the strings the CLI passes
    (``"2"``); both are checked against the target's declared types.

    Args:
        target: a target name (``local``), or an MLflow-style URI (``sagemaker:/eu-west-1``)
            whose part after ``:`` the target interprets.
        options: target options, as a mapping.
        config_file: a ``.toml`` or ``.json`` file of options.
        environ: the environment to read ``MODELPORT_<TARGET>_<KEY>`` from (default:
            ``os.environ``).
        progress: where the target reports its steps, waits and warnings.
        options_name: how messages name where ``options`` came from (the CLI says ``-C``).
        **kwargs: more target options (they win over ``options``). An option named like one
            of this function's own parameters goes in ``options``.

    Raises:
        PluginError: no such target, or it cannot be imported (its extra is missing).
        ConfigError: an unknown option, a bad value, or a missing required option.
    """
    from modelport.deployers.config import Sources, build_config, read_config_file
    from modelport.plugins.registry import load_target, parse_target

    name, uri = parse_target(target)
    if not name:
        raise UsageError(f"target {target!r}: no target name before ':'")
    cls = load_target(name)
    file_values = read_config_file(config_file) if config_file is not None else {}
    config = build_config(
        cls.config_class,
        cls.name,
        Sources(
            file=file_values,
            file_name=str(Path(config_file)) if config_file is not None else None,
            env=dict(os.environ if environ is None else environ),
            uri=cls.options_from_uri(uri) if uri is not None else {},
            cli={**(options or {}), **kwargs},
            cli_name=options_name,
        ),
    )
    return cls(config, target_uri=uri, progress=progress)
