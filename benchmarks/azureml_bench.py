"""How long the azureml target's verbs take against the offline Azure, and how many ARM requests
they make.

The Azure is the tests' fake (``tests/deployers/azureml/fake_azure.py``): one HTTPS server on
127.0.0.1 answering Resource Manager as azure-ai-ml expects, with deployments that really serve
(the package baked into a small image pushed to the local registry, run as a ``modelport``
process: no image build). The client is the real azure-ai-ml. So the figures are modelport's
and azure-ai-ml's own work plus the fake's host start-up, not Azure's: on Azure a managed
online deployment takes minutes to provision and that wait dominates. What they show is what
modelport adds on top, and how many requests each verb sends to Resource Manager.

Long-running operations (endpoint and deployment PUT and DELETE) are answered as Azure does by
default (``--lro async``: 201/202 with ``Azure-AsyncOperation``, then polled; the fake holds a
poll until the work is done, up to 2 s), or once the work is done (``--lro sync``).

Per round (``--rounds``, medians reported): ``deploy --dry-run`` (plan), create, update to
another package (blue/green: the new deployment, all traffic to it, the old one removed), a
canary update (10 % to the new deployment), its promote, delete.

Needs the local registry (``source .ci/setup-containers.sh``, or ``$MODELPORT_TEST_REGISTRY``).

Run::

    .venv/bin/python benchmarks/azureml_bench.py [--rounds 5] [--lro async|sync] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud_bench import lifecycle, print_table, timed  # beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT / "tests" / "deployers" / "azureml"),
    str(ROOT / "tests" / "deployers"),
    str(ROOT / "tests"),  # the fakes' shared helpers (http_fakes, storage_servers)
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lro", choices=("async", "sync"), default="async")
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()
    # azure-ai-ml's schemas use options marshmallow deprecates: not ours to report.
    warnings.filterwarnings("ignore", module="marshmallow")

    from azureml_support import azureml_target
    from fake_azure import FakeAzure, push_process_image

    from modelport.model_format.package import load
    from modelport.plugins.testing import make_test_package

    tmp = Path(tempfile.mkdtemp(prefix="modelport-azureml-bench-"))
    v1 = make_test_package(tmp / "v1.mport", scale=1.0, version="1")
    v2 = make_test_package(tmp / "v2.mport", scale=2.0, version="2")
    samples: dict[str, list[float]] = {}
    requests: dict[str, list[int]] = {}
    polls: dict[str, list[int]] = {}
    os.environ["MODELPORT_HOME"] = str(tmp / "home")
    with FakeAzure() as fake:
        for name in fake.conflicting_env():
            del os.environ[name]
        os.environ.update(fake.az_env(tmp / "azure-config"))
        fake.lro = args.lro
        repository = "modelport-azureml-bench"
        run = uuid.uuid4().hex[:8]
        try:
            image_v1 = push_process_image(fake.registry, v1, repository, f"v1-{run}")
            image_v2 = push_process_image(fake.registry, v2, repository, f"v2-{run}")
        except OSError as exc:
            print(f"no registry at {fake.registry} ({exc}): source .ci/setup-containers.sh")
            return 3

        def measure(label: str, action: Callable[[], Any]) -> Any:
            fake.clear_calls()
            seconds, result = timed(action)
            samples.setdefault(label, []).append(seconds)
            requests.setdefault(label, []).append(len(fake.calls("arm")))
            polls.setdefault(label, []).append(len(fake.calls("poll")))
            return result

        serving_v1 = azureml_target(fake, image=image_v1)
        serving_v2 = azureml_target(fake, image=image_v2)
        canary_v1 = azureml_target(fake, image=image_v1, canary_percent=10)
        with load(v1) as package, load(v2) as package_v2:
            for _ in range(args.rounds):
                name = f"bench-{uuid.uuid4().hex[:8]}"
                for label, action in lifecycle(
                    name, serving_v1, serving_v2, canary_v1, package, package_v2
                ):
                    measure(label, action)
                left = fake.endpoints(), fake.environments()
                if any(left):
                    raise SystemExit(f"the round left {left} behind")
    print_table(
        f"azureml target against the offline Azure ({args.lro} LROs), {args.rounds} round(s); "
        "medians (min-max)",
        samples,
        {"ARM requests": requests, "polls": polls},
    )
    if args.json:
        found = {"lro": args.lro, "samples": samples, "arm_requests": requests, "polls": polls}
        args.json.write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
