"""Finding deploy targets: the ``modelport.deployers.v1`` entry-point group.

Each entry point names a :class:`~modelport.deployers.Deployer` subclass::

    [project.entry-points."modelport.deployers.v1"]
    local = "modelport.deployers.local:LocalDeployer"
    docker = "modelport.deployers.docker:DockerDeployer [docker]"

Listing targets (:func:`discover`) imports none of them. It reads installed distributions'
metadata only:

- **missing extra**: an entry point may name extras in brackets (the standard entry-point syntax).
  The requirements its distribution declares for those extras (``Requires-Dist: docker>=7;
  extra == "docker"``) must be installed, else the target is reported as ``missing extra`` with
  the exact ``pip install '<distribution>[<extra>]'`` that fixes it. No side table to keep in
  sync, and third-party plugins get the same check for free.
- **broken** (found without importing): a malformed entry point, a module that cannot be found,
  or two distributions claiming one target name (both are named).
- **broken** (found when imported, by :func:`load_target` or ``modelport targets --check``): the
  module raises on import, or the object is not a Deployer class; the distribution and the
  original error are reported, and other targets are unaffected.

A program may also :func:`register` a Deployer class in-process, without installing a
distribution (fsspec's ``register_implementation``): it is listed and selected like the others,
and wins over an installed target of the same name only when asked to (``replace=True``).
"""

from __future__ import annotations

import difflib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from modelport.errors import PluginError

if TYPE_CHECKING:
    import importlib.metadata

    from modelport.deployers.base import Deployer

GROUP = "modelport.deployers.v1"
#: What ``modelport targets`` shows as the distribution of a target registered in-process.
REGISTERED = "(registered in-process)"

_registered: dict[str, type[Deployer[Any]]] = {}

Status = Literal["ok", "missing extra", "broken"]


@dataclass(frozen=True)
class TargetInfo:
    """One target as listed by ``modelport targets``, found without importing it.

    Attributes:
        name: the target's name (the entry point's name).
        value: the entry point's value, ``module:Class [extras]``.
        distribution: the installed distribution that declares it.
        version: that distribution's version.
        status: ``ok``, ``missing extra`` or ``broken``.
        problem: why it is not ``ok``, for people.
        extras: the extras the entry point needs.
        missing: the requirements of those extras that are not installed.
        install: the command that installs the missing extras, when some are missing.
    """

    name: str
    value: str
    distribution: str
    version: str
    status: Status = "ok"
    problem: str | None = None
    extras: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    install: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON values."""
        return {
            "name": self.name,
            "value": self.value,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "problem": self.problem,
            "extras": list(self.extras),
            "missing": list(self.missing),
            "install": self.install,
        }


def parse_target(spec: str) -> tuple[str, str | None]:
    """Split ``name`` or an MLflow-style URI ``name:rest`` into ``(name, rest)``.

    >>> parse_target("sagemaker:/eu-west-1")
    ('sagemaker', '/eu-west-1')
    >>> parse_target("local")
    ('local', None)
    """
    name, sep, rest = spec.partition(":")
    return name.strip(), (rest if sep else None)


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    # Imported here, not at the top: ``import modelport.deployers`` (every plugin, the serving
    # image's entrypoint) imports this module, and importlib.metadata costs more than the rest.
    import importlib.metadata

    return list(importlib.metadata.entry_points(group=GROUP))


def _dist_of(
    ep: importlib.metadata.EntryPoint,
) -> tuple[str, str, importlib.metadata.Distribution | None]:
    dist = ep.dist
    if dist is None:  # pragma: no cover - entry points always come from a distribution
        return "unknown", "unknown", None
    return str(dist.metadata["Name"] or dist.name), str(dist.version), dist


def discover(
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> list[TargetInfo]:
    """List every target, sorted by name, without importing any of them.

    Args:
        entry_points: the entry points to examine (default: every installed one in the group).
    """
    eps = list(_entry_points() if entry_points is None else entry_points)
    infos = [_inspect(ep) for ep in eps if ep.name not in _registered]
    infos += [_registered_info(name, cls) for name, cls in _registered.items()]
    by_name: dict[str, list[TargetInfo]] = {}
    for info in infos:
        by_name.setdefault(info.name, []).append(info)
    result = []
    for name in sorted(by_name):
        claims = by_name[name]
        dists = sorted({c.distribution for c in claims})
        if len(claims) > 1:
            who = " and ".join(f"{c.distribution} {c.version} ({c.value})" for c in claims)
            problem = (
                f"target name {name!r} is claimed by more than one plugin: {who}; "
                f"uninstall all but one of: {', '.join(dists)}"
            )
            claims = [replace(c, status="broken", problem=problem) for c in claims]
        result.extend(claims)
    return result


def _registered_info(name: str, cls: type[Deployer[Any]]) -> TargetInfo:
    from modelport import __version__

    return TargetInfo(name, f"{cls.__module__}:{cls.__qualname__}", REGISTERED, __version__)


def _inspect(ep: importlib.metadata.EntryPoint) -> TargetInfo:
    dist_name, version, dist = _dist_of(ep)
    info = TargetInfo(ep.name, ep.value, dist_name, version)
    match = ep.pattern.match(ep.value)
    if match is None or not match.group("attr"):
        return replace(
            info,
            status="broken",
            problem=f"entry point {ep.name} = {ep.value!r} must name a class as 'module:Class'",
        )
    extras = tuple(ep.extras)
    info = replace(info, extras=extras)
    if extras and dist is not None:
        missing = _missing_requirements(dist, extras)
        if missing:
            extra_list = ",".join(extras)
            return replace(
                info,
                status="missing extra",
                missing=tuple(missing),
                problem=f"needs {', '.join(missing)} (extra {extra_list!r}), not installed",
                install=f"pip install '{dist_name}[{extra_list}]'",
            )
    if not _module_exists(ep.module):
        return replace(
            info,
            status="broken",
            problem=f"module {ep.module!r} not found (entry point {ep.value!r})",
        )
    return info


def _missing_requirements(
    dist: importlib.metadata.Distribution, extras: Sequence[str]
) -> list[str]:
    """Requirements the distribution declares for ``extras`` that are not installed.

    An extra may include other extras of the same distribution (``docker = ["docker>=7",
    "modelport[serve]"]``); those are followed too (:func:`modelport.image.requirements.requires`).
    """
    from modelport.image.requirements import installed_version, requires

    try:
        needed = requires(dist, extras, core=False)
    except ValueError:  # malformed metadata: let pip complain, not us
        return []
    return sorted({r.name for r in needed if installed_version(r.name) is None})


def _module_exists(module: str) -> bool:
    """Whether ``module`` can be found, without importing it or running any package's code.

    ``importlib.util.find_spec("a.b")`` would import ``a``; instead find ``a`` and then look for
    each submodule in its parent's search path. Anything unusual counts as found (the import,
    when the target is selected, has the last word).
    """
    parts = module.split(".")
    try:
        if module in sys.modules:
            return True
        spec = importlib.util.find_spec(parts[0])
        for depth in range(1, len(parts)):
            if spec is None:
                return False
            locations = spec.submodule_search_locations
            if locations is None:
                return False
            name = ".".join(parts[: depth + 1])
            if name in sys.modules:
                return True
            spec = importlib.machinery.PathFinder.find_spec(name, list(locations))
            if spec is None:
                # A meta-path finder (an editable install's) may know what PathFinder does not.
                return _found_by_meta_path(name, list(locations))
        return spec is not None
    except (ImportError, ValueError, AttributeError):
        return True


def _found_by_meta_path(name: str, path: list[str]) -> bool:
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None or finder is importlib.machinery.PathFinder:
            continue
        try:
            if find_spec(name, path) is not None:
                return True
        except Exception:  # a third-party finder failing is not our verdict to give
            continue
    return False


def get_info(name: str, infos: Sequence[TargetInfo] | None = None) -> TargetInfo:
    """The listing entry of one target.

    Raises:
        PluginError: no such target (with a "did you mean" hint), the target is claimed twice,
            misses an extra (with the ``pip install`` command), or is broken.
    """
    infos = discover() if infos is None else infos
    claims = [i for i in infos if i.name == name]
    if not claims:
        known = sorted({i.name for i in infos})
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PluginError(
            f"unknown target {name!r}{hint} (installed targets: {', '.join(known) or 'none'}; "
            "run 'modelport targets' to list them)"
        )
    info = claims[0]
    if info.status == "missing extra":
        raise PluginError(
            f"target {name!r} ({info.distribution} {info.version}) {info.problem}",
            hint=f"install it with: {info.install}",
        )
    if info.status == "broken":
        raise PluginError(
            f"target {name!r} from distribution {info.distribution} {info.version} is broken: "
            f"{info.problem}"
        )
    return info


def load_target(name: str) -> type[Deployer[Any]]:
    """Import a target's class by name; the only place a target's code runs on selection.

    Raises:
        PluginError: unknown, claimed twice, missing an extra, or broken (the message names
            the distribution and the original error).
    """
    if name in _registered:
        return _registered[name]
    eps = _entry_points()
    # Inspect only the entry points that claim ``name`` (two make it broken); every target is
    # inspected only when none does, for the "did you mean" hint.
    claims = [e for e in eps if e.name == name]
    info = get_info(name, discover(claims or eps))
    return _load(claims[0], info)


class BrokenTargetError(PluginError):
    """A target failed to import, or what it names is not a usable Deployer class."""

    def __init__(self, info: TargetInfo, problem: str) -> None:
        self.info = info
        self.problem = problem
        super().__init__(
            f"target {info.name!r} from distribution {info.distribution} {info.version} is "
            f"broken: {problem}"
        )


def _class_problem(obj: Any, name: str, shown: str) -> str | None:
    """Why ``obj`` (called ``shown`` in messages) cannot be the target ``name``, or None."""
    from modelport.deployers.base import Deployer, is_config_class

    if not (isinstance(obj, type) and issubclass(obj, Deployer)):
        return f"{shown} is not a subclass of modelport.deployers.Deployer"
    if getattr(obj, "name", None) != name:
        return (
            f"the target is named {name!r} but {obj.__name__}.name is "
            f"{getattr(obj, 'name', None)!r}; they must match"
        )
    if not is_config_class(obj.config_class):
        return f"{obj.__name__}.config_class is not a dataclass"
    if getattr(obj, "__abstractmethods__", None):
        return f"{obj.__name__} does not implement {', '.join(sorted(obj.__abstractmethods__))}"
    return None


def _load(ep: importlib.metadata.EntryPoint, info: TargetInfo) -> type[Deployer[Any]]:
    try:
        obj = ep.load()
    except Exception as exc:
        raise BrokenTargetError(
            info, f"importing {ep.value!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    problem = _class_problem(obj, info.name, repr(ep.value))
    if problem is not None:
        raise BrokenTargetError(info, problem)
    result: type[Deployer[Any]] = obj
    return result


def register(name: str, cls: type[Deployer[Any]], *, replace: bool = False) -> None:
    """Make ``cls`` the target ``name`` in this process, without installing a distribution.

    ``connect(name)``, ``modelport targets`` and every command run in this process then find it.

    Args:
        name: the target's name; must equal ``cls.name``.
        cls: a concrete :class:`~modelport.deployers.Deployer` subclass.
        replace: allow taking a name an installed or registered target already has.

    Raises:
        PluginError: ``cls`` is not a usable Deployer class, or the name is taken.
    """
    problem = _class_problem(cls, name, repr(cls))
    if problem is not None:
        raise PluginError(f"cannot register target {name!r}: {problem}")
    if not replace and (name in _registered or any(ep.name == name for ep in _entry_points())):
        raise PluginError(
            f"cannot register target {name!r}: that name is taken",
            hint="pass replace=True to take it in this process",
        )
    _registered[name] = cls


def unregister(name: str) -> None:
    """Forget a target registered with :func:`register` (nothing happens if there is none)."""
    _registered.pop(name, None)


def check_all() -> list[TargetInfo]:
    """Like :func:`discover`, then import every ``ok`` target to prove it loads (``--check``).

    A target that fails to import is reported ``broken`` with the original error; the others
    are unaffected.
    """
    eps = _entry_points()
    result = []
    for info in discover(eps):
        checked = info
        if info.status == "ok" and info.distribution != REGISTERED:
            ep = next((e for e in eps if e.name == info.name and e.value == info.value), None)
            if ep is not None:
                try:
                    _load(ep, info)
                except BrokenTargetError as exc:
                    checked = replace(info, status="broken", problem=exc.problem)
        result.append(checked)
    return result
