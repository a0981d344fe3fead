"""The ``echo`` target: each deployment is a directory; ``predict`` runs the package in-process.

Layout, under the ``root`` option::

    <root>/<name>/deployment.json   the record (name, digest, times)
    <root>/<name>/<package copy>    package-<generation>.mport, or a package directory

``create`` and ``update`` are lists of named steps, each with its undo, run by modelport's
deployer kit (``self.rollout(...)``). The kit gives the target, for free:

- rollback: when a step fails, the undos of the steps before it run in reverse order;
- ``modelport deploy --dry-run``: the same steps, planned instead of run;
- progress on the terminal, one line per step;
- failpoints: modelport's contract suite makes each step fail in turn and checks that nothing is
  left behind (``MODELPORT_FAILPOINTS=echo.create.move-into-place`` does it from the CLI).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.deployers import Deployer, Deployment, DeploymentStatus, utcnow
from modelport.deployers.kit.rollout import Step
from modelport.deployers.kit.state import default_home
from modelport.errors import DeploymentError, DeploymentExists, DeploymentNotFound

if TYPE_CHECKING:
    from modelport import Package

RECORD = "deployment.json"


def _default_root() -> Path:
    return default_home() / "deployments" / "echo"


@dataclass(frozen=True)
class EchoConfig:
    """Options of the echo target: each field is one ``-C key=value`` option.

    The annotation is the type the command-line string is parsed to; ``metadata["help"]`` is what
    ``modelport targets help echo`` prints. Fields without a default are required.
    """

    root: Path | None = field(
        default=None,
        metadata={
            "help": "Directory holding the deployments (default: $MODELPORT_HOME/deployments/"
            "echo, else ~/.modelport/deployments/echo). Also given as a URI: -t echo:/path."
        },
    )


def _copy_package(package: Package, directory: Path, generation: int) -> Path:
    source = Path(package.path)
    if source.is_dir():
        target = directory / f"package-{generation}"
        shutil.copytree(source, target)
    else:
        target = directory / f"package-{generation}.mport"
        shutil.copyfile(source, target)
    return target


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _write_record(directory: Path, record: Mapping[str, Any]) -> None:
    tmp = directory / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(dict(record), indent=2), "utf-8")
    os.replace(tmp, directory / RECORD)  # atomic: readers see the old or the new record


class EchoDeployer(Deployer[EchoConfig]):
    """Deployments are directories on this machine; predictions run in-process.

    An example target to copy: every verb is a few lines, built on modelport's deployer kit, and
    it passes modelport's contract suite (modelport.plugins.testing.DeployerContract).
    """

    name = "echo"
    config_class = EchoConfig

    @classmethod
    def options_from_uri(cls, uri: str) -> dict[str, Any]:
        """``-t echo:/some/dir`` puts the deployments in ``/some/dir``."""
        return {"root": uri} if uri.strip() else {}

    @property
    def root(self) -> Path:
        """Where the deployments live."""
        return self.config.root or _default_root()

    # --- helpers --------------------------------------------------------------------------

    def _read(self, name: str) -> dict[str, Any]:
        self.check_name(name)
        try:
            record = json.loads((self.root / name / RECORD).read_text("utf-8"))
        except FileNotFoundError:
            raise DeploymentNotFound(f"no deployment named {name!r} on target 'echo'") from None
        if not isinstance(record, dict):
            raise DeploymentError(f"the record of echo deployment {name!r} is corrupt")
        return record

    def _deployment(self, record: Mapping[str, Any]) -> Deployment:
        directory = self.root / record["name"]
        healthy = (directory / record["package_path"]).exists()
        return Deployment(
            name=record["name"],
            target=self.name,
            status=DeploymentStatus.READY if healthy else DeploymentStatus.FAILED,
            endpoint=None,  # nothing listens: predict() runs in-process
            package_digest=record["package_digest"],
            created_at=datetime.fromisoformat(record["created_at"]),
            updated_at=datetime.fromisoformat(record["updated_at"]),
            details={
                "directory": str(directory),
                "package_name": record["package_name"],
                "package_version": record["package_version"],
            },
        )

    @staticmethod
    def _describe(package: Package) -> dict[str, Any]:
        return {
            "package_digest": package.digest,
            "package_name": package.name,
            "package_version": package.version,
            "allow_code": package.manifest.flavor.name != "onnx",
        }

    # --- the steps ------------------------------------------------------------------------

    def create_steps(self, name: str, package: Package, *, wait: bool = True) -> Sequence[Step]:
        """Stage the deployment in a temporary directory, then move it into place.

        Building the steps touches nothing (``--dry-run`` plans them): only their ``run`` does.
        Each step gets the results of the steps before it, by name.
        """
        final = self.root / name

        def stage(_: Mapping[str, Any]) -> Path:
            self.root.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))

        def copy(done: Mapping[str, Any]) -> Path:
            return _copy_package(package, done["stage"], 1)

        def record(done: Mapping[str, Any]) -> dict[str, Any]:
            now = utcnow().isoformat()
            data = {
                "name": name,
                **self._describe(package),
                "package_path": done["copy-package"].name,
                "generation": 1,
                "created_at": now,
                "updated_at": now,
            }
            _write_record(done["stage"], data)
            return data

        def move(done: Mapping[str, Any]) -> Path:
            try:
                done["stage"].rename(final)  # atomic; fails if the name appeared meanwhile
            except OSError:
                raise DeploymentExists(f"a deployment named {name!r} already exists") from None
            return done["stage"]

        return [
            Step("stage", f"make a staging directory in {self.root}", stage, undo=shutil.rmtree),
            Step("copy-package", f"copy {package.name} {package.version}", copy, undo=_remove),
            Step("write-record", "write the deployment's record", record),
            # Undone by moving back, so that the staging directory's undo removes it all.
            Step("move-into-place", f"move it to {final}", move, undo=final.rename),
        ]

    # --- the verbs ------------------------------------------------------------------------

    def create(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Run the steps of :meth:`create_steps`; a failure undoes those that ran."""
        self.check_name(name)
        if (self.root / name).exists():
            raise DeploymentExists(f"a deployment named {name!r} already exists on target 'echo'")
        done = self.rollout("create", self.create_steps(name, package, wait=wait)).run()
        return self._deployment(done["write-record"])

    def update(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Copy the new package beside the old one, switch the record, remove the old copy.

        There is nothing to wait for here, so ``wait`` changes nothing.
        """
        old = self._read(name)
        if old["package_digest"] == package.digest:
            return self._deployment(old)  # same package: nothing to do
        directory = self.root / name
        generation = int(old["generation"]) + 1
        new = {
            **old,
            **self._describe(package),
            "generation": generation,
            "updated_at": utcnow().isoformat(),
        }

        def copy(_: Mapping[str, Any]) -> Path:
            path = _copy_package(package, directory, generation)
            new["package_path"] = path.name
            return path

        steps = [
            Step("copy-package", f"copy {package.name} {package.version}", copy, undo=_remove),
            Step(
                "switch-record",
                "point the record at the new copy",
                lambda _: _write_record(directory, new),
                undo=lambda _: _write_record(directory, old),
            ),
        ]
        self.rollout("update", steps).run()
        _remove(directory / old["package_path"])  # the switch is done: the old copy goes
        return self._deployment(new)

    def delete(self, name: str) -> None:
        """Remove the deployment's directory; nothing to do if it is not there."""
        self.check_name(name)
        shutil.rmtree(self.root / name, ignore_errors=True)

    def get(self, name: str) -> Deployment:
        """Read the record."""
        return self._deployment(self._read(name))

    def list(self) -> Sequence[Deployment]:
        """Every deployment under ``root``."""
        if not self.root.is_dir():
            return []
        return [
            self.get(d.name)
            for d in sorted(self.root.iterdir())
            if not d.name.startswith(".") and (d / RECORD).is_file()
        ]

    def predict(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Load the deployed package and predict in-process, as the server would answer."""
        from modelport import load
        from modelport.model_format.payload import format_predictions, parse_payload

        record = self._read(name)
        path = self.root / name / record["package_path"]
        with load(path, allow_code=bool(record.get("allow_code"))) as package:
            outputs = package.predict(parse_payload(payload, package.signature))
        return format_predictions(outputs)

    def logs(self, name: str, *, tail: int | None = 100) -> Iterator[str]:
        """The echo target keeps no log but its record; show that."""
        lines = json.dumps(self._read(name), indent=2).splitlines()
        return iter(lines if tail is None else lines[-tail:] if tail else [])
