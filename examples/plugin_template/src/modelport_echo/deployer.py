"""The ``echo`` target: each deployment is a directory; ``predict`` runs the package in-process.

Layout, under the ``root`` option::

    <root>/<name>/deployment.json   the record (name, digest, times)
    <root>/<name>/<package copy>    package-<generation>.mport, or a package directory

Every change is made in a temporary place and moved into place with one ``os.replace`` /
``os.rename``, so a failure at any point leaves either the old state or nothing: the rule
"failures leave no half-made resources" costs a few lines, not a cleanup framework.
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

from modelport.deployers import Deployer, Deployment, DeploymentStatus, PlannedAction, utcnow
from modelport.errors import DeploymentError, DeploymentExists, DeploymentNotFound

if TYPE_CHECKING:
    from modelport import Package

RECORD = "deployment.json"


def _default_root() -> Path:
    home = os.environ.get("MODELPORT_HOME") or Path.home() / ".modelport"
    return Path(home).expanduser() / "deployments" / "echo"


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
    simulate_failure: bool = field(
        default=False,
        metadata={"help": "Fail create and update midway (to test that failures clean up)."},
    )


class EchoDeployer(Deployer[EchoConfig]):
    """Deployments are directories on this machine; predictions run in-process.

    An example target to copy: every verb is a few lines, and it passes modelport's contract
    suite (modelport.plugins.testing.DeployerContract).
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
    def _copy_package(package: Package, directory: Path, generation: int) -> str:
        source = Path(package.path)
        if source.is_dir():
            target = f"package-{generation}"
            shutil.copytree(source, directory / target)
        else:
            target = f"package-{generation}.mport"
            shutil.copyfile(source, directory / target)
        return target

    @staticmethod
    def _write_record(directory: Path, record: Mapping[str, Any]) -> None:
        tmp = directory / f".{RECORD}.tmp"
        tmp.write_text(json.dumps(dict(record), indent=2), "utf-8")
        os.replace(tmp, directory / RECORD)  # atomic: readers see the old or the new record

    def _maybe_fail(self, what: str) -> None:
        if self.config.simulate_failure:
            raise DeploymentError(f"{what} failed (simulate_failure=true)")

    # --- the verbs ------------------------------------------------------------------------

    def plan(self, name: str, package: Package) -> Sequence[PlannedAction]:
        """What ``create`` would write."""
        return [
            PlannedAction(
                "directory",
                f"create {self.root / name} with a copy of {package.name} {package.version}",
                {"path": str(self.root / name), "package_digest": package.digest},
            )
        ]

    def create(self, name: str, package: Package, *, wait: bool = True) -> Deployment:
        """Build the deployment in a temporary directory, then rename it into place."""
        self.check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / name).exists():
            raise DeploymentExists(f"a deployment named {name!r} already exists on target 'echo'")
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        try:
            self.progress(f"copying {package.name} {package.version}")
            now = utcnow().isoformat()
            record = {
                "name": name,
                "package_digest": package.digest,
                "package_name": package.name,
                "package_version": package.version,
                "package_path": self._copy_package(package, staging, 1),
                "allow_code": package.manifest.flavor.name != "onnx",
                "generation": 1,
                "created_at": now,
                "updated_at": now,
            }
            self._maybe_fail("create")
            self._write_record(staging, record)
            try:
                staging.rename(self.root / name)  # atomic; fails if the name appeared meanwhile
            except OSError:
                raise DeploymentExists(f"a deployment named {name!r} already exists") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self._deployment(record)

    def update(self, name: str, package: Package) -> Deployment:
        """Copy the new package beside the old one, switch the record, remove the old copy."""
        record = self._read(name)
        if record["package_digest"] == package.digest:
            return self._deployment(record)  # same package: nothing to do
        directory = self.root / name
        generation = int(record["generation"]) + 1
        new_path = directory / f"package-{generation}"
        try:
            copied = self._copy_package(package, directory, generation)
            new_path = directory / copied
            self._maybe_fail("update")
        except BaseException:
            shutil.rmtree(new_path, ignore_errors=True)
            new_path.with_suffix(".mport").unlink(missing_ok=True)
            raise
        old_path = directory / record["package_path"]
        record.update(
            package_digest=package.digest,
            package_name=package.name,
            package_version=package.version,
            package_path=copied,
            allow_code=package.manifest.flavor.name != "onnx",
            generation=generation,
            updated_at=utcnow().isoformat(),
        )
        self._write_record(directory, record)
        if old_path.is_dir():
            shutil.rmtree(old_path)
        else:
            old_path.unlink(missing_ok=True)
        return self._deployment(record)

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
