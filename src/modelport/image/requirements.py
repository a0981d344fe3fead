"""Requirements of installed distributions: the one walker, and the image's pinned runtime.

:func:`requires` answers "what does this distribution need for these extras?" from installed
metadata, with markers evaluated and the distribution's references to its own extras followed
(``docker = ["docker>=7", "modelport[serve]"]``). Two callers: :func:`pinned_requirements`
(everything a serving image installs, pinned to what is installed here) and the target registry
(which extras of a plugin are missing). Parsing is ``packaging``'s, never a regular expression.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Collection, Iterable, Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelport.errors import PackageError

#: Extras of modelport the image installs: the server.
RUNTIME_EXTRAS = ("serve",)


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _applies(requirement: Requirement, extras: Collection[str], core: bool) -> bool:
    """Whether a requirement is needed for ``extras`` (and, with ``core``, by the base install)."""
    marker = requirement.marker
    if marker is None:
        return core
    wanted = any(marker.evaluate({"extra": e}) for e in extras)
    base = marker.evaluate({"extra": ""})
    return (wanted or base) if core else (wanted and not base)


def requires(
    distribution: str | importlib.metadata.Distribution,
    extras: Collection[str] = (),
    *,
    core: bool = True,
) -> list[Requirement]:
    """What an installed distribution requires for ``extras``, markers evaluated.

    Args:
        distribution: the distribution (or its name).
        extras: the extras asked for.
        core: include the requirements of the base install too; False gives only what the
            extras add.

    Returns:
        One entry per requirement, in metadata order. A requirement on the distribution itself
        (``modelport[serve]`` inside another extra of modelport) is replaced by what those
        extras require. Empty when the distribution is not installed.

    Raises:
        InvalidRequirement: the distribution's own metadata is malformed.
    """
    if isinstance(distribution, str):
        try:
            dist = importlib.metadata.distribution(distribution)
        except importlib.metadata.PackageNotFoundError:
            return []
    else:
        # Not an isinstance check: with the importlib_metadata backport imported (MLflow does),
        # entry points come with the backport's Distribution class.
        dist = distribution
    own = canonicalize_name(dist.metadata["Name"] or "")
    lines = [Requirement(text) for text in dist.requires or []]
    result: list[Requirement] = []
    seen_extras: set[str] = set()
    pending = [canonicalize_name(e) for e in extras]
    first = True
    while pending or first:
        batch = set(pending) - seen_extras
        pending = []
        if not batch and not first:
            break
        seen_extras |= batch
        for req in lines:
            if not _applies(req, batch, core and first):
                continue
            if canonicalize_name(req.name) == own:
                pending.extend(canonicalize_name(e) for e in req.extras)
            elif req not in result:
                result.append(req)
        first = False
    return result


def pinned_requirements(
    package_requirements: Sequence[str], extras: Iterable[str] = RUNTIME_EXTRAS
) -> list[str]:
    """Every requirement the image installs, pinned, one ``name==version`` per distribution.

    The package's own pinned requirements come first and win. Then modelport's runtime (its core
    dependencies and ``extras``) and everything those need, walked through the metadata of what is
    installed here and pinned to the installed versions, so an image built today and one built
    next month get the same libraries. A distribution the package pins to a version other than the
    one installed here is a leaf of the walk: pip resolves what that version needs.

    Raises:
        PackageError: a package requirement is not a plain requirement (a URL, a pip option,
            not parsable): the manifest's own rule, :func:`requirement_problem`.
    """
    from modelport.model_format.manifest import requirement_problem

    pins: dict[str, str] = {}  # canonical name -> requirement line
    queue: list[tuple[str, frozenset[str]]] = []  # (distribution, extras) whose deps to walk
    for text in package_requirements:
        problem = requirement_problem(text)
        if problem is not None:
            raise PackageError(f"invalid requirement in the package: {problem}")
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        pins.setdefault(canonicalize_name(req.name), text.split(";")[0].strip())
        local = installed_version(req.name)
        if local is not None and req.specifier.contains(local, prereleases=True):
            queue.append((req.name, frozenset(req.extras)))

    queue.append(("modelport", frozenset(extras)))
    walked: set[tuple[str, frozenset[str]]] = set()
    while queue:
        dist_name, dist_extras = queue.pop()
        key = (canonicalize_name(dist_name), dist_extras)
        if key in walked:
            continue
        walked.add(key)
        for req in requires(dist_name, dist_extras):
            name = canonicalize_name(req.name)
            local = installed_version(req.name)
            if name not in pins:
                pins[name] = f"{name}=={local}" if local else str(req).split(";")[0].strip()
            elif not pins[name].endswith(f"=={local}"):
                continue  # pinned by the package to another version: pip resolves its needs
            if local is not None:
                queue.append((req.name, frozenset(req.extras)))
    pins.pop("modelport", None)  # installed from the wheel in the context
    return [pins[name] for name in sorted(pins)]
