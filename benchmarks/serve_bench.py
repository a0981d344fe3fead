"""Serving throughput: modelport beside MLflow, MLServer and the in-process ONNX Runtime limit.

Usage:
    python benchmarks/serve_bench.py [--rounds 3] [--duration 5]
        [--servers modelport,mlflow,mlserver] [--baseline CHECKOUT]
        [--mlflow-venv /tmp/bench-venvs/mlflow]
        [--mlserver-venv /tmp/bench-venvs/mlserver]
        [--models lr,rf] [--rows 1,100] [--concurrency 1,8,32]
        [--server-cpu 0] [--client-cpu 1] [--json results.json] [--dry-run]

Every server serves the same ONNX models (a LogisticRegression and a 100-tree RandomForest on 20
float features, converted with skl2onnx once), pinned to one core with ``taskset`` while wrk runs
on another. Each round starts every server afresh (that is the cold-start sample: spawn to the
first 200 from its health route), warms it up, then drives it with wrk at each concurrency and
request size. Rounds interleave the servers (the order rotates), and the table shows medians.

- modelport: ``modelport serve PKG`` (gunicorn, one worker since one core is usable),
  ``POST /invocations`` with ``{"inputs": [[...]]}``.
- MLflow: ``mlflow models serve --env-manager local`` on the ONNX model saved with
  ``mlflow.onnx.save_model`` (a float32 tensor signature), same body. Its own venv:
  ``python3 -m venv /tmp/bench-venvs/mlflow``, then
  ``/tmp/bench-venvs/mlflow/bin/pip install mlflow onnx onnxruntime``.
- MLServer: ``mlserver start`` with a minimal ONNX Runtime runtime written here (MLServer ships
  none), ``POST /v2/models/NAME/infer``. Its own venv:
  ``python3 -m venv /tmp/bench-venvs/mlserver``, then
  ``/tmp/bench-venvs/mlserver/bin/pip install mlserver onnxruntime 'uvloop<0.22'`` (MLServer
  1.7's workers call ``asyncio.get_event_loop()``, which uvloop 0.22 turned into an error).
- modelport-baseline: the same, from another checkout's ``src/`` (``--baseline``, say a
  ``git worktree add /tmp/before HEAD~1``), so a change is measured beside what it changes.
- modelport-unbatched: ``modelport serve --no-batching``.
- modelport-npy: the same server, the same rows as an ``application/x-npy`` body (float32, what
  ``numpy.save`` writes): what a binary body saves over JSON.
- in-process: ``InferenceSession.run`` on the same rows in a loop, one thread, same core, no HTTP.

Needs wrk (Debian: ``apt-get install -y wrk``) and taskset. A server whose venv is missing is
skipped with a note. Nothing here is part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

FEATURES = 20
MODELS = ("lr", "rf")
ROWS = (1, 100)
CONCURRENCY = (1, 8, 32)
#: The open-loop rates: these shares of the closed-loop maximum (at the highest concurrency).
OPEN_LOOP = (0.5, 0.8)
#: modelport with ``--no-batching``: what the dynamic batcher costs or buys, side by side.
UNBATCHED = "modelport-unbatched"
#: modelport from another checkout (``--baseline``): a change beside what it changes, in one run
BASELINE = "modelport-baseline"
#: modelport on ``application/x-npy`` bodies: the same rows without JSON
NPY = "modelport-npy"
NPY_TYPE = "application/x-npy"
SERVERS = ("modelport", UNBATCHED, BASELINE, NPY, "mlflow", "mlserver")
OPEN_LOOP_SCRIPT = Path(__file__).with_name("open_loop.py")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("BENCH_TYPE") or "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("p99.9 %d\\n", latency:percentile(99.9)))
end
"""
MLSERVER_RUNTIME = '''
"""A minimal ONNX Runtime runtime for MLServer (MLServer ships none)."""
import os

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(n, r) for n, r in zip(self._outputs, results)],
        )
'''
MLFLOW_SAVE = """
import sys
import numpy as np
import onnx
import mlflow.onnx
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

model = onnx.load(sys.argv[1])
spec = TensorSpec(np.dtype(np.float32), (-1, int(sys.argv[3])))
signature = ModelSignature(inputs=Schema([spec]))
mlflow.onnx.save_model(model, sys.argv[2], signature=signature)
"""


@dataclass
class Sample:
    """One wrk run."""

    server: str
    model: str
    rows: int
    concurrency: int
    requests_per_s: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    errors: int
    p999_ms: float = float("nan")
    #: "closed" (wrk at ``concurrency``), or "open NN%" (a fixed rate, that share of the maximum)
    load: str = "closed"


@dataclass
class Start:
    """One server start."""

    server: str
    model: str
    cold_start_s: float
    rss_mb_largest: float
    rss_mb_total: float


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)
    starts: list[Start] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: how far behind its schedule the open-loop client fell at worst, over every run
    client_lag_ms: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    pids = [pid]
    i = 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*"):
            with suppress(OSError):
                pids.extend(int(c) for c in (task / "children").read_text().split())
        i += 1
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLOCK_TICK


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def http_ok(url: str, body: bytes | None = None) -> bool:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            resp.read()
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# --- models -------------------------------------------------------------------------------------


def build_models(workdir: Path) -> dict[str, Path]:
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, FEATURES)).astype(np.float32)
    y = ((x[:, 0] * x[:, 1] + np.sin(3 * x[:, 2]) + 0.3 * rng.normal(size=4000)) > 0).astype(int)
    estimators = {
        "lr": LogisticRegression(max_iter=500),
        "rf": RandomForestClassifier(n_estimators=100, random_state=0),
    }
    paths = {}
    for name, estimator in estimators.items():
        estimator.fit(x, y)
        onnx_model = to_onnx(
            estimator, x[:1], options={id(estimator): {"zipmap": False}}, target_opset=17
        )
        path = workdir / f"{name}.onnx"
        path.write_bytes(onnx_model.SerializeToString())
        paths[name] = path
    np.save(workdir / "x.npy", x)
    return paths


def write_bodies(workdir: Path, row_counts: list[int]) -> dict[tuple[str, int], Path]:
    import numpy as np

    x = np.load(workdir / "x.npy")
    bodies = {}
    for rows in sorted({1, *row_counts}):
        data = x[:rows]
        inputs = json.dumps({"inputs": data.tolist()})
        v2 = json.dumps(
            {
                "inputs": [
                    {
                        "name": "X",
                        "shape": list(data.shape),
                        "datatype": "FP32",
                        "data": data.ravel().tolist(),
                    }
                ]
            }
        )
        for kind, text in (("inputs", inputs), ("v2", v2)):
            path = workdir / f"body-{kind}-{rows}.json"
            path.write_text(text)
            bodies[(kind, rows)] = path
        npy = workdir / f"body-npy-{rows}.npy"
        np.save(npy, np.ascontiguousarray(data, dtype=np.float32))
        bodies[("npy", rows)] = npy
    return bodies


# --- servers ------------------------------------------------------------------------------------


@dataclass
class Spec:
    """How to start one server on one model."""

    command: list[str]
    health: str
    predict: str
    body_kind: str
    env: dict[str, str]
    content_type: str = "application/json"


def modelport_spec(workdir: Path, model: str, port: int, *options: str) -> Spec:
    import modelport

    package = workdir / f"{model}.mport"
    if not package.exists():
        import numpy as np

        example = np.load(workdir / "x.npy")[:5]
        modelport.pack(workdir / f"{model}.onnx", package, name=model, example={"X": example})
    command = [
        sys.executable,
        "-m",
        "modelport.cli.main",
        "serve",
        str(package),
        "--port",
        str(port),
        "--workers",
        "1",
        *options,
    ]
    base = f"http://127.0.0.1:{port}"
    return Spec(command, f"{base}/ping", f"{base}/invocations", "inputs", {})


def mlflow_spec(workdir: Path, model: str, port: int, venv: Path) -> Spec:
    target = workdir / f"mlflow-{model}"
    if not target.exists():
        subprocess.run(
            [str(venv / "bin/python"), "-c", MLFLOW_SAVE, str(workdir / f"{model}.onnx"),
             str(target), str(FEATURES)],
            check=True,
            capture_output=True,
        )  # fmt: skip
    command = [
        str(venv / "bin/mlflow"),
        "models",
        "serve",
        "-m",
        str(target),
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "1",
    ]
    base = f"http://127.0.0.1:{port}"
    # MLflow starts uvicorn through the shell: its venv must be on PATH.
    env = {
        "MLFLOW_TRACKING_URI": f"file://{workdir}/mlruns",
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
    }
    return Spec(command, f"{base}/ping", f"{base}/invocations", "inputs", env)


def mlserver_spec(workdir: Path, model: str, port: int, venv: Path) -> Spec:
    repo = workdir / f"mlserver-{model}-{port}"
    model_dir = repo / model
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(workdir / f"{model}.onnx", model_dir / "model.onnx")
    (model_dir / "onnx_runtime.py").write_text(MLSERVER_RUNTIME)
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": model,
                "implementation": "onnx_runtime.OnnxRuntime",
                "parameters": {"uri": "./model.onnx"},
            }
        )
    )
    (repo / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "debug": False,
            }
        )
    )
    base = f"http://127.0.0.1:{port}"
    return Spec(
        [str(venv / "bin/mlserver"), "start", str(repo)],
        f"{base}/v2/models/{model}/ready",
        f"{base}/v2/models/{model}/infer",
        "v2",
        {"PYTHONPATH": str(model_dir), "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"},
    )


@contextmanager
def running(spec: Spec, cpu: int, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start a server pinned to ``cpu``; yield it and its cold start (spawn to first 200)."""
    with log.open("ab") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            ["taskset", "-c", str(cpu), *spec.command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **spec.env},
            start_new_session=True,  # its own process group, so stopping it stops its workers
        )
        try:
            deadline = started + 120
            while not http_ok(spec.health):
                if proc.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"{spec.command[0]} did not start; see {log}")
                time.sleep(0.005)
            yield proc, time.perf_counter() - started
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


def parse_latency(text: str) -> float:
    """wrk's '1.23ms' / '456.00us' / '1.20s' in milliseconds."""
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    raise ValueError(text)


def run_wrk(
    url: str,
    body: Path,
    concurrency: int,
    duration: int,
    cpu: int,
    script: Path,
    content_type: str = "application/json",
) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{concurrency}", f"-d{duration}s",
         "--timeout", "10s", "--latency", "-s", str(script), url],
        env={**os.environ, "BENCH_BODY": str(body), "BENCH_TYPE": content_type},
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
    result: dict[str, float] = {"errors": 0.0}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            result[parts[0]] = parse_latency(parts[1])
        elif len(parts) == 2 and parts[0] == "p99.9":
            result["99.9%"] = float(parts[1]) / 1e3  # the script's done(): microseconds
        elif "requests in" in line:
            result["requests"] = float(parts[0])
        elif line.startswith("  Non-2xx") or line.strip().startswith("Socket errors"):
            result["errors"] += sum(float(p.rstrip(",")) for p in parts if p.rstrip(",").isdigit())
    return result


def run_open_loop(
    url: str,
    body: Path,
    rate: float,
    duration: int,
    args: argparse.Namespace,
    content_type: str = "application/json",
) -> dict[str, float]:
    """benchmarks/open_loop.py on the client's core: ``rate`` requests/s for ``duration`` s."""
    out = subprocess.run(
        ["taskset", "-c", str(args.client_cpu), sys.executable, str(OPEN_LOOP_SCRIPT), url,
         str(body), f"{rate:.1f}", str(duration), "--connections", str(args.connections),
         "--content-type", content_type],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout  # fmt: skip
    return dict(json.loads(out))


def in_process(workdir: Path, model: str, rows: int, cpu: int, seconds: float) -> Sample:
    """ONNX Runtime's own speed on the same rows: no HTTP, one thread, the server's core."""
    import numpy as np
    import onnxruntime as ort

    os.sched_setaffinity(0, {cpu})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(workdir / f"{model}.onnx"), options, providers=["CPUExecutionProvider"]
    )
    x = np.ascontiguousarray(np.load(workdir / "x.npy")[:rows])
    name = session.get_inputs()[0].name
    for _ in range(200):
        session.run(None, {name: x})
    times = []
    cpu_started = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t)
    cpu_per_call = (time.process_time() - cpu_started) / len(times)
    mean = sum(times) / len(times)
    times.sort()
    return Sample(
        "in-process ORT",
        model,
        rows,
        1,
        1 / mean,
        rows / mean,
        times[len(times) // 2] * 1e3,
        times[int(len(times) * 0.99)] * 1e3,
        cpu_per_call * 1e6,
        0,
    )


# --- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace, results: Results) -> None:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="serve-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"work directory: {workdir}", file=sys.stderr)
    build_models(workdir)
    bodies = write_bodies(workdir, args.rows)
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    servers = list(args.servers)
    venvs = {"mlflow": Path(args.mlflow_venv), "mlserver": Path(args.mlserver_venv)}
    for name in ("mlflow", "mlserver"):
        exe = venvs[name] / "bin" / name
        if name in servers and not exe.exists():
            results.notes.append(f"{name}: skipped, {exe} not found")
            servers.remove(name)
    for model in args.models:
        for rows in args.rows:
            results.samples.append(
                in_process(workdir, model, rows, args.server_cpu, min(args.duration, 3))
            )
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))

    for round_ in range(args.rounds):
        order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
        for model in args.models:
            for server in order:
                port = free_port()
                if server == "modelport":
                    spec = modelport_spec(workdir, model, port)
                elif server == UNBATCHED:
                    spec = modelport_spec(workdir, model, port, "--no-batching")
                elif server == NPY:
                    spec = modelport_spec(workdir, model, port)
                    spec.body_kind, spec.content_type = "npy", NPY_TYPE
                elif server == BASELINE:
                    spec = modelport_spec(workdir, model, port)
                    spec.env = {"PYTHONPATH": str(Path(args.baseline).resolve() / "src")}
                elif server == "mlflow":
                    spec = mlflow_spec(workdir, model, port, venvs["mlflow"])
                else:
                    spec = mlserver_spec(workdir, model, port, venvs["mlserver"])
                log = workdir / f"{server}-{model}.log"
                print(f"round {round_ + 1}: {server} {model}", file=sys.stderr)
                with running(spec, args.server_cpu, log) as (proc, cold):
                    # Warm-up: the first requests of a fresh server are not its steady state.
                    run_wrk(
                        spec.predict,
                        bodies[(spec.body_kind, 1)],
                        8,
                        1,
                        args.client_cpu,
                        script,
                        spec.content_type,
                    )
                    for rows in args.rows:
                        body = bodies[(spec.body_kind, rows)]
                        for concurrency in args.concurrency:
                            pids = tree(proc.pid)
                            cpu_before = cpu_seconds(pids)
                            out = run_wrk(
                                spec.predict,
                                body,
                                concurrency,
                                args.duration,
                                args.client_cpu,
                                script,
                                spec.content_type,
                            )
                            cpu = cpu_seconds(pids) - cpu_before
                            requests = max(out.get("requests", 0.0), 1.0)
                            results.samples.append(
                                Sample(
                                    server,
                                    model,
                                    rows,
                                    concurrency,
                                    out["rps"],
                                    out["rps"] * rows,
                                    out.get("50%", float("nan")),
                                    out.get("99%", float("nan")),
                                    cpu / requests * 1e6,
                                    int(out["errors"]),
                                    out.get("99.9%", float("nan")),
                                )
                            )
                        # Open loop at shares of the maximum just measured (at the highest
                        # concurrency): a fixed schedule, latency from each request's due time.
                        highest = max(args.concurrency)
                        maximum = next(
                            s.requests_per_s
                            for s in reversed(results.samples)
                            if s.concurrency == highest and s.load == "closed"
                        )
                        for share in args.open_loop:
                            pids = tree(proc.pid)
                            cpu_before = cpu_seconds(pids)
                            got = run_open_loop(
                                spec.predict,
                                body,
                                maximum * share,
                                args.duration,
                                args,
                                spec.content_type,
                            )
                            cpu = cpu_seconds(pids) - cpu_before
                            results.samples.append(
                                Sample(
                                    server,
                                    model,
                                    rows,
                                    highest,
                                    got["rate"],
                                    got["rate"] * rows,
                                    got["p50_ms"],
                                    got["p99_ms"],
                                    cpu / max(got["answered"], 1.0) * 1e6,
                                    int(got["errors"]),
                                    got["p99.9_ms"],
                                    f"open {share:.0%}",
                                )
                            )
                            results.client_lag_ms = max(results.client_lag_ms, got["late_start_ms"])
                    sizes = [rss_mb(p) for p in tree(proc.pid)]
                    results.starts.append(Start(server, model, cold, max(sizes), sum(sizes)))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load_label(sample: Sample) -> str:
    """``c=32`` for a closed-loop run, ``open 80%`` for an open-loop one."""
    return f"c={sample.concurrency}" if sample.load == "closed" else sample.load


def report(results: Results, args: argparse.Namespace) -> str:
    servers = list(args.servers)
    lines = []
    groups: dict[tuple[str, int, str, str], list[Sample]] = defaultdict(list)
    for s in results.samples:
        groups[(s.model, s.rows, load_label(s), s.server)].append(s)
    lines.append(
        "| model | rows | load | server | req/s | rows/s | p50 ms | p99 ms | p99.9 ms "
        "| CPU µs/req | req/s ÷ modelport | p99 ÷ modelport |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    loads = [f"c={c}" for c in args.concurrency] + [f"open {x:.0%}" for x in args.open_loop]
    for model in args.models:
        for rows in args.rows:
            for load in loads:
                base = groups.get((model, rows, load, "modelport"), [])
                base_rps = median([s.requests_per_s for s in base])
                base_p99 = median([s.p99_ms for s in base])
                first = load == loads[0]
                names = [*servers, "in-process ORT"] if first else servers
                for server in names:
                    key_load = "c=1" if server == "in-process ORT" else load
                    samples = groups.get((model, rows, key_load, server), [])
                    if not samples:
                        continue
                    rps = median([s.requests_per_s for s in samples])
                    p99 = median([s.p99_ms for s in samples])
                    errors = sum(s.errors for s in samples)
                    lines.append(
                        f"| {model} | {rows} | {load} | {server}"
                        f"{' (' + str(errors) + ' errors)' if errors else ''} | {rps:,.0f} "
                        f"| {median([s.rows_per_s for s in samples]):,.0f} "
                        f"| {median([s.p50_ms for s in samples]):.2f} | {p99:.2f} "
                        f"| {median([s.p999_ms for s in samples]):.2f} "
                        f"| {median([s.cpu_us_per_request for s in samples]):,.0f} "
                        f"| {rps / base_rps:.2f} | {p99 / base_p99:.2f} |"
                    )
    lines.append("")
    lines.append("| model | server | cold start s | RSS MB, largest process | RSS MB, all |")
    lines.append("|---|---|---|---|---|")
    starts: dict[tuple[str, str], list[Start]] = defaultdict(list)
    for st in results.starts:
        starts[(st.model, st.server)].append(st)
    for model in args.models:
        for server in servers:
            group = starts.get((model, server), [])
            if group:
                lines.append(
                    f"| {model} | {server} | {median([g.cold_start_s for g in group]):.2f} "
                    f"| {median([g.rss_mb_largest for g in group]):.0f} "
                    f"| {median([g.rss_mb_total for g in group]):.0f} |"
                )
    if args.open_loop:
        lines.append(
            f"\nnote: the open-loop client fell at most {results.client_lag_ms:.1f} ms behind its "
            "schedule (a request due then went out that late; its latency counts from when due)"
        )
    lines.extend(f"\nnote: {n}" for n in results.notes)
    return "\n".join(lines)


def _names(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def _shares(text: str) -> list[float]:
    shares = [float(x) for x in text.split(",") if x]
    if any(not 0 < x <= 1 for x in shares):
        raise argparse.ArgumentTypeError("shares are between 0 and 1")
    return shares


def _numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(__doc__ or "").split("\n\n", 1)[-1],
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument(
        "--servers",
        type=_names,
        default=["modelport", "mlflow", "mlserver"],
        help=f"a subset of {','.join(SERVERS)} (default modelport,mlflow,mlserver)",
    )
    parser.add_argument(
        "--models", type=_names, default=list(MODELS), help="subset of lr,rf (default both)"
    )
    parser.add_argument(
        "--rows", type=_numbers, default=list(ROWS), help="rows per request (default 1,100)"
    )
    parser.add_argument(
        "--concurrency", type=_numbers, default=list(CONCURRENCY), help="default 1,8,32"
    )
    parser.add_argument(
        "--open-loop",
        type=_shares,
        default=list(OPEN_LOOP),
        help="open-loop rates as shares of the closed-loop maximum (default 0.5,0.8; '' for none)",
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="the open-loop client's connections"
    )
    parser.add_argument(
        "--baseline",
        help=f"a modelport checkout (a git worktree of an earlier commit) served as {BASELINE}",
    )
    parser.add_argument("--mlflow-venv", default="/tmp/bench-venvs/mlflow")
    parser.add_argument("--mlserver-venv", default="/tmp/bench-venvs/mlserver")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--workdir", help="keep models and logs here (default: a temp dir)")
    parser.add_argument("--json", help="also write every sample to this file")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the tools and print the plan; run nothing"
    )
    args = parser.parse_args(argv)
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if (BASELINE in args.servers) != bool(args.baseline):
        parser.error(f"--baseline DIR and {BASELINE} in --servers go together")
    if args.baseline and not (Path(args.baseline) / "src" / "modelport").is_dir():
        parser.error(f"--baseline: no src/modelport in {args.baseline}")
    if set(args.models) - set(MODELS):
        parser.error(f"--models: choose from {', '.join(MODELS)}")
    if args.dry_run:
        for tool in ("wrk", "taskset"):
            print(f"{tool}: {shutil.which(tool) or 'MISSING'}")
        for name in ("mlflow", "mlserver"):
            exe = Path(getattr(args, f"{name}_venv")) / "bin" / name
            print(f"{name}: {exe if exe.exists() else 'MISSING (' + str(exe) + ')'}")
        per_server = len(args.models) * len(args.rows) * args.rounds
        runs = len(args.servers) * per_server * len(args.concurrency)
        opens = len(args.servers) * per_server * len(args.open_loop)
        print(
            f"plan: {args.rounds} round(s) x {len(args.servers)} server(s) x {len(args.models)} "
            f"model(s) x rows {args.rows} x concurrency {args.concurrency}: {runs} wrk runs of "
            f"{args.duration:g} s, then {opens} open-loop runs at {args.open_loop} of the "
            f"maximum, servers on CPU {args.server_cpu}, clients on CPU {args.client_cpu}"
        )
        return 0
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    results = Results()
    run(args, results)
    print(report(results, args))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "samples": [asdict(s) for s in results.samples],
                    "starts": [asdict(s) for s in results.starts],
                    "notes": results.notes,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
