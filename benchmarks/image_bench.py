"""Serving images side by side: modelport's Dockerfile vs ``mlflow models generate-dockerfile``.

One scikit-learn model (LogisticRegression, 20 float features) is saved by MLflow (its own venv,
``mlflow.sklearn.save_model``); modelport packs that same directory (converting it to ONNX, as it
does), and each tool's Dockerfile is built through the Docker Engine API ($DOCKER_HOST: Docker, or
podman's service from ``.ci/setup-containers.sh``) on the same base image. For each it measures,
in interleaved rounds (medians reported):

- size above the base image (uncompressed, what the engine reports);
- build time cold (no layer cache: every step runs, packages are downloaded; each round builds on
  a copy of the base image with a new id, so nothing cached before can match), then the same
  build again (everything cached), then a new model version with the same requirements (the
  common redeploy);
- container start -> ready (``docker run`` until ``GET /ping`` answers 200).

MLflow's Dockerfile starts ``FROM python:3.11.7-slim`` and installs with the system ``pip``; no
registry is reachable here and the base image is a plain Debian, whose Python is externally
managed (PEP 668) and has no ``pip`` command. The adaptations, and nothing else:

1. ``FROM`` the same base image modelport builds on;
2. a venv first (``python3 -m venv /opt/venv``, ``ENV PATH=/opt/venv/bin:$PATH``), so its
   ``pip install`` and ``python`` lines run unchanged, as they do on the python image;
3. where pip needs a CA bundle (``$PIP_CERT``: a TLS-inspecting proxy), it is copied in and
   named by ``PIP_CERT``, as modelport's build stage does.

Run (after ``source .ci/setup-containers.sh``)::

    .venv/bin/python benchmarks/image_bench.py [--rounds 3] [--starts 5]

MLflow is installed into its own venv (default ``/tmp/modelport-bench-mlflow``) if it is not there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MODEL_SCRIPT = """
import sys
import numpy as np
import mlflow.sklearn
from sklearn.linear_model import LogisticRegression

out, c = sys.argv[1], float(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.normal(size=(1000, 20))
y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(np.int64)
model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
mlflow.sklearn.save_model(model, out, input_example=x[:2])
"""


def log(message: str) -> None:
    print(f"[image_bench] {message}", file=sys.stderr, flush=True)


def ensure_mlflow(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not (venv / "bin" / "mlflow").exists():
        log(f"installing mlflow and scikit-learn into {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "mlflow", "scikit-learn"], check=True
        )
    return python


def mlflow_model(python: Path, out: Path, c: float) -> Path:
    subprocess.run([str(python), "-c", MODEL_SCRIPT, str(out), str(c)], check=True)
    return out


def mlflow_context(venv: Path, model: Path, out: Path, base: str, cert: str | None) -> Path:
    mlflow = str(venv / "bin" / "mlflow")
    subprocess.run(
        [mlflow, "models", "generate-dockerfile", "-m", str(model), "-d", str(out)],
        check=True,
        capture_output=True,
    )
    dockerfile = out / "Dockerfile"
    lines = dockerfile.read_text().splitlines()
    adapted = []
    for line in lines:
        if line.startswith("FROM "):
            adapted.append(f"FROM {base}")  # (1) the same base image
            adapted.append("RUN python3 -m venv /opt/venv")  # (2) a venv on a plain Debian
            adapted.append("ENV PATH=/opt/venv/bin:$PATH")
            if cert:  # (3) the proxy's CA for pip
                shutil.copyfile(cert, out / "pip-ca.pem")
                adapted.append("COPY pip-ca.pem /etc/pip-ca.pem")
                adapted.append("ENV PIP_CERT=/etc/pip-ca.pem")
        else:
            adapted.append(line)
    dockerfile.write_text("\n".join(adapted) + "\n")
    return out


def modelport_context(package: Path, out: Path, base: str, cert: str | None) -> Path:
    from modelport.image import write_context

    return write_context(package, out, base_image=base, pip_cert=cert).directory


class Engine:
    def __init__(self) -> None:
        import docker

        self.client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], timeout=1800)

    def image_ids(self) -> set[str]:
        return {str(i.id) for i in self.client.images.list(all=True)}

    def fresh_base(self, base: str, context: Path) -> str:
        """``base`` with one more label: the same files under a new image id."""
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(
            f"FROM {base}\nLABEL dev.modelport.bench-base={context.name}\n"
        )
        tag = f"localhost/bench/base:{context.name}"
        self.build(context, tag)
        return tag

    def build(self, context: Path, tag: str) -> float:
        start = time.monotonic()
        tail: list[str] = []
        for chunk in self.client.api.build(
            path=str(context), tag=tag, rm=True, forcerm=True, decode=True
        ):
            tail = [*tail[-39:], str(chunk.get("stream", ""))]
            if "error" in chunk:
                raise RuntimeError(f"build of {tag} failed: {chunk['error']}\n{''.join(tail)}")
        return time.monotonic() - start

    def size(self, ref: str) -> int:
        return int(self.client.images.get(ref).attrs["Size"])

    def start_to_ready(self, ref: str) -> float:
        start = time.monotonic()
        container = self.client.containers.run(
            ref, detach=True, ports={"8080/tcp": ("127.0.0.1", None)}
        )
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            port = None
            while True:
                if port is None:
                    container.reload()
                    bindings = container.attrs["NetworkSettings"]["Ports"].get("8080/tcp")
                    port = int(bindings[0]["HostPort"]) if bindings else None
                if port is not None:
                    url = f"http://127.0.0.1:{port}/ping"
                    with contextlib.suppress(OSError), opener.open(url, timeout=2) as r:
                        if r.status == 200:
                            return time.monotonic() - start
                if time.monotonic() - start > 300:
                    raise RuntimeError(f"{ref} not ready in 300 s: {container.logs()[-2000:]!r}")
                time.sleep(0.02)
        finally:
            container.remove(force=True)

    def predict_ok(self, ref: str, body: dict[str, Any]) -> Any:
        container = self.client.containers.run(
            ref, detach=True, ports={"8080/tcp": ("127.0.0.1", None)}
        )
        try:
            deadline = time.monotonic() + 300
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            while True:
                container.reload()
                port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations",
                    data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with opener.open(request, timeout=5) as r:
                        return json.loads(r.read())
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            container.remove(force=True)

    def remove(self, ref: str) -> None:
        with contextlib.suppress(Exception):
            self.client.images.remove(ref, force=True)

    def remove_new(self, before: set[str]) -> None:
        """Remove images made since ``before`` (a cold build's intermediate stages)."""
        for image_id in self.image_ids() - before:
            with contextlib.suppress(Exception):
                self.client.images.remove(image_id, force=True)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="image-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_s(values: list[float]) -> str:
    if not values:
        return "-"
    spread = f" ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else ""
    return f"{median(values):.2f} s{spread}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold/cached build rounds")
    parser.add_argument("--starts", type=int, default=5, help="start->ready runs per round")
    parser.add_argument("--base-image", default=os.environ.get("MODELPORT_TEST_BASE_IMAGE"))
    parser.add_argument("--mlflow-venv", type=Path, default=Path("/tmp/modelport-bench-mlflow"))
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    if not args.base_image or "DOCKER_HOST" not in os.environ:
        parser.error("needs DOCKER_HOST and --base-image: source .ci/setup-containers.sh first")
    cert = os.environ.get("PIP_CERT") or None
    engine = Engine()
    base_size = engine.size(args.base_image)
    tools = ["modelport"] + ([] if args.skip_mlflow else ["mlflow"])
    results: dict[str, dict[str, list[float]]] = {
        t: {"cold": [], "cached": [], "new_model": [], "ready": [], "size": []} for t in tools
    }
    with workdir() as root:
        mlflow_python = ensure_mlflow(args.mlflow_venv)
        import modelport

        models, packages = {}, {}
        for version, c in (("1", 1.0), ("2", 0.5)):
            models[version] = mlflow_model(mlflow_python, root / f"mlflow-model-{version}", c)
            packages[version] = root / f"model-{version}.mport"
            modelport.pack(models[version], packages[version], name="bench", version=version)
        # MLflow's own serving example ({"inputs": [[...20 floats], ...]}): both servers read it.
        body = json.loads((models["1"] / "serving_input_example.json").read_text())

        contexts: dict[str, Callable[[str, Path, str], Path]] = {
            "modelport": lambda v, out, base: modelport_context(packages[v], out, base, cert),
            "mlflow": lambda v, out, base: mlflow_context(
                args.mlflow_venv, models[v], out, base, cert
            ),
        }
        for round_ in range(args.rounds):
            for tool in tools:
                # A base image with the same files and a new id: no layer built before matches
                # it, so the first build is cold, and the next ones use what it cached.
                before = engine.image_ids()
                base = engine.fresh_base(args.base_image, root / f"base-{tool}-{round_}")
                ctx1 = contexts[tool]("1", root / f"{tool}-{round_}-v1", base)
                ctx2 = contexts[tool]("2", root / f"{tool}-{round_}-v2", base)
                tag1, tag2 = f"localhost/bench/{tool}:1", f"localhost/bench/{tool}:2"
                log(f"round {round_ + 1}: {tool} cold build")
                results[tool]["cold"].append(engine.build(ctx1, tag1))
                results[tool]["size"].append((engine.size(tag1) - engine.size(base)) / 1e6)
                log(f"round {round_ + 1}: {tool} cached build, new-model build")
                results[tool]["cached"].append(engine.build(ctx1, tag1))
                results[tool]["new_model"].append(engine.build(ctx2, tag2))
                if round_ == 0:
                    answer = engine.predict_ok(tag1, body)
                    log(f"{tool} answers {json.dumps(answer)[:80]}")
                for _ in range(args.starts):
                    results[tool]["ready"].append(engine.start_to_ready(tag1))
                for ref in (tag2, tag1, base):
                    engine.remove(ref)
                engine.remove_new(before)

    print(
        f"\nBase image {args.base_image}: {base_size / 1e6:.0f} MB. Medians (min-max) of "
        f"{args.rounds} round(s); start->ready over {args.rounds * args.starts} runs.\n"
    )
    header = f"| {'':34} | " + " | ".join(f"{t:>22}" for t in tools)
    if len(tools) == 2:
        header += " | mlflow / modelport"
    print(header + " |")
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:]) + "|")
    rows = [
        ("image size above base", "size", lambda v: f"{median(v):.0f} MB"),
        ("build, cold (no layer cache)", "cold", fmt_s),
        ("build, everything cached", "cached", fmt_s),
        ("build, new model (same reqs)", "new_model", fmt_s),
        ("container start -> ready", "ready", fmt_s),
    ]
    for label, key, show in rows:
        cells = [show(results[t][key]) for t in tools]
        line = f"| {label:34} | " + " | ".join(f"{c:>22}" for c in cells)
        if len(tools) == 2:
            ratio = median(results["mlflow"][key]) / median(results["modelport"][key])
            line += f" | {ratio:17.1f}x"
        print(line + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
