"""Verbs finished in the background, for targets that do their work from this machine.

``update(name, package, wait=False)`` must return while the new version is still starting. A
cloud does the rest by itself; the local and docker targets have nobody to wait for readiness
and switch, so they hand the verb to a detached process with :func:`start`, which runs the very
same ``update(..., wait=True)``: the same steps, undos and failpoints as a foreground update.

One job per deployment, in ``<home>/jobs/<target>/<name>/``::

    job.json           what to run (target class, config, verb, package digest) and how it ended
    pid.json           the job's process (written by the starter; job.json only by the job)
    job.log            its output: progress lines, and the error if it failed
    package[.mport]    a private copy of the package (removed when the job ends)

:func:`last` reads how the latest job stands (a job whose process died without saying so is
reported ``failed``); targets show it in ``get`` (status ``updating`` while it runs).
:func:`cancel` stops a running job, which undoes what it made (``delete`` calls it first). Run a
job by hand with ``python -m modelport.deployers.kit.background JOB_DIRECTORY``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from modelport.deployers.kit import processes
from modelport.deployers.kit.state import exclusive_lock, write_json_atomic
from modelport.errors import ConflictError, DeploymentError, NotSupportedError

if TYPE_CHECKING:
    from modelport.deployers.base import Deployer
    from modelport.model_format.package import Package

JOB_FILE = "job.json"
PID_FILE = "pid.json"
LOG_FILE = "job.log"
JobStatus = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class Job:
    """A background job, as its job file says.

    Attributes:
        target: the target's name.
        name: the deployment.
        verb: what runs (``update``).
        package_digest: the package the verb was given.
        status: ``running``, ``succeeded`` or ``failed``.
        pid: its process.
        started_at: when it started (ISO 8601, UTC).
        finished_at: when it ended.
        error: why it failed.
        log: its log file.
    """

    target: str
    name: str
    verb: str
    package_digest: str
    status: JobStatus
    pid: int | None
    started_at: str
    finished_at: str | None = None
    error: str | None = None
    log: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON values (what ``get`` shows under ``details``)."""
        return {
            "verb": self.verb,
            "status": self.status,
            "package_digest": self.package_digest,
            "pid": self.pid,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "log": self.log,
        }


def job_directory(home: Path, target: str, name: str) -> Path:
    """Where the job of deployment ``name`` on ``target`` lives."""
    return home / "jobs" / target / name


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read(directory: Path) -> dict[str, Any] | None:
    """The job file, with the process from the pid file."""
    data = _read_json(directory / JOB_FILE)
    if data is not None:
        data.update(_read_json(directory / PID_FILE) or {})
    return data


#: A job whose pid file is not written yet is still starting, for this long.
_STARTING_S = 30.0


def _alive(data: dict[str, Any]) -> bool:
    pid = data.get("pid")
    if isinstance(pid, int):
        return processes.is_running(pid, data.get("start_time"))
    from datetime import datetime

    from modelport.deployers.base import utcnow

    try:
        started = datetime.fromisoformat(str(data.get("started_at")))
    except ValueError:
        return False
    return (utcnow() - started).total_seconds() < _STARTING_S


def last(home: Path, target: str, name: str) -> Job | None:
    """The latest job of a deployment, or None when it never had one."""
    directory = job_directory(home, target, name)
    data = _read(directory)
    if data is None:
        return None
    status: JobStatus = data.get("status", "failed")
    error = data.get("error")
    if status == "running" and not _alive(data):
        status, error = "failed", error or "the background job ended without saying how"
    return Job(
        target=target,
        name=name,
        verb=str(data.get("verb")),
        package_digest=str(data.get("package_digest")),
        status=status,
        pid=data.get("pid"),
        started_at=str(data.get("started_at")),
        finished_at=data.get("finished_at"),
        error=error,
        log=str(directory / LOG_FILE),
    )


def _locked(home: Path, target: str, name: str) -> contextlib.AbstractContextManager[None]:
    """Serialize starting and cancelling a deployment's job, across processes."""
    return exclusive_lock(job_directory(home, target, name).with_name(f".{name}.lock"))


def _running_elsewhere(home: Path, target: str, name: str) -> dict[str, Any] | None:
    """The job file of a job of this deployment running in another process, if any."""
    data = _read(job_directory(home, target, name))
    if data is None or data.get("status") != "running" or not _alive(data):
        return None
    return None if data.get("pid") == os.getpid() else data


def refuse_if_busy(home: Path, target: str, name: str) -> None:
    """Refuse to change a deployment while a background job of it runs in another process.

    Raises:
        ConflictError: one runs.
    """
    data = _running_elsewhere(home, target, name)
    if data is not None:
        raise ConflictError(
            f"a background {data.get('verb')} of {target} deployment {name!r} is still "
            f"running (pid {data.get('pid')})",
            hint=f"wait for it: 'modelport deployments get -t {target} -n {name}' shows when it "
            "is done",
        )


def _importable(cls: type[Any]) -> str:
    """``module:qualname`` of a class another process can import.

    Raises:
        NotSupportedError: it cannot be (defined in ``__main__``, a notebook or a function).
    """
    spec = f"{cls.__module__}:{cls.__qualname__}"
    found: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__ or found is not cls:
        raise NotSupportedError(
            f"{spec} cannot run in a background job: another process cannot import it",
            hint="define the target in an importable module, or wait for the verb",
        )
    return spec


def start(deployer: Deployer[Any], verb: str, name: str, package: Package, *, home: Path) -> Job:
    """Run ``deployer.<verb>(name, package, wait=True)`` in a detached process.

    Raises:
        ConflictError: a job of this deployment is still running.
        NotSupportedError: the target's class cannot be imported by another process.
    """
    from modelport.deployers.base import utcnow
    from modelport.deployers.config import config_to_dict

    spec = _importable(type(deployer))
    directory = job_directory(home, deployer.name, name)
    with _locked(home, deployer.name, name):
        refuse_if_busy(home, deployer.name, name)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        source = Path(package.path)
        copy = directory / ("package" if source.is_dir() else "package.mport")
        if source.is_dir():
            shutil.copytree(source, copy)
        else:
            shutil.copyfile(source, copy)
        job: dict[str, Any] = {
            "version": 1,
            "target": deployer.name,
            "class": spec,
            "target_uri": deployer.target_uri,
            "config": config_to_dict(deployer.config),
            "verb": verb,
            "name": name,
            "package": copy.name,
            "package_digest": package.digest,
            "status": "running",
            "started_at": utcnow().isoformat(),
        }
        write_json_atomic(directory / JOB_FILE, job)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "modelport.deployers.kit.background", str(directory)]
        pid = processes.spawn_detached(command, log=directory / LOG_FILE, env=env)
        started = processes.start_time(pid)
        write_json_atomic(directory / PID_FILE, {"pid": pid, "start_time": started})
    found = last(home, deployer.name, name)
    assert found is not None
    return found


def cancel(home: Path, target: str, name: str, *, timeout: float = 60.0) -> None:
    """Stop a deployment's running job (it undoes what it made) and forget it."""
    directory = job_directory(home, target, name)
    with _locked(home, target, name):
        data = _read(directory)
        pid = data.get("pid") if data is not None else None
        if data is not None and isinstance(pid, int) and data.get("status") == "running":
            processes.stop_all([(pid, data.get("start_time"))], timeout=timeout)
        shutil.rmtree(directory, ignore_errors=True)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the rollout, whose undos then run.
    raise SystemExit(f"stopped by signal {signum}")


def run_job(directory: Path) -> int:
    """Run the job in ``directory`` (the detached process's main); returns its exit status."""
    from modelport.deployers.config import Sources, build_config
    from modelport.deployers.kit.progress import Progress
    from modelport.model_format.package import load

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    job = _read_json(directory / JOB_FILE)
    if job is None:
        print(f"modelport: no readable {JOB_FILE} in {directory}", file=sys.stderr)
        return 1
    status, error = "failed", None
    try:
        module, _, qualname = str(job["class"]).partition(":")
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        config = build_config(
            cls.config_class, cls.name, Sources(cli=job["config"], cli_name="the job file")
        )
        deployer = cls(
            config,
            target_uri=job.get("target_uri"),
            progress=Progress.from_lines(lambda line: print(line, flush=True)),
        )
        # allow_code: the caller loaded this very package, so it opted in if the package needs
        # it (an onnx package never runs code, whatever the flag says).
        with load(directory / job["package"], allow_code=True) as package:
            if package.digest != job["package_digest"]:
                raise DeploymentError("the job's copy of the package changed; start again")
            getattr(deployer, job["verb"])(job["name"], package, wait=True)
        status = "succeeded"
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        traceback.print_exc()
    finally:
        from modelport.deployers.base import utcnow

        job.update(status=status, error=error, finished_at=utcnow().isoformat())
        write_json_atomic(directory / JOB_FILE, job)
        package_copy = directory / str(job.get("package"))
        if package_copy.is_dir():
            shutil.rmtree(package_copy, ignore_errors=True)
        else:
            package_copy.unlink(missing_ok=True)
    print(f"modelport: background {job.get('verb')} {status}", flush=True)
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(run_job(Path(sys.argv[1])))
