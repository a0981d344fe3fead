"""How long the sagemaker target's verbs take against the offline AWS, and how many calls they make.

The AWS is the tests' fake (``tests/deployers/sagemaker/fake_aws.py``): moto's server on
127.0.0.1 with endpoints that really serve the uploaded ``model.tar.gz`` (a ``modelport serve``
process per endpoint, or with ``--containers`` the pushed image run as SageMaker runs it). So the
figures are modelport's own work plus the fake's host start-up, not AWS's: on AWS an endpoint
takes minutes to be ``InService`` and that wait dominates. What they show is what modelport adds
on top, the number of API calls each verb makes, and that a second model with the same
requirements deploys with no image build and no push.

Per round (``--rounds``, medians reported): ``deploy --dry-run`` (plan), create (real-time),
update to another package, delete. With ``--containers`` (after ``source
.ci/setup-containers.sh``): the first deploy to a fresh ECR repository (the runtime image pushed,
built first unless the engine has it), then a second package with the same requirements (no
build, no push), each until it answers through the container.

Run::

    .venv/bin/python benchmarks/sagemaker_bench.py [--rounds 5] [--containers] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud_bench import DELETE, PLAN, UPDATE, print_table, timed  # beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT / "tests" / "deployers" / "sagemaker"),
    str(ROOT / "tests" / "deployers"),
    str(ROOT / "tests"),  # the fakes' shared helpers (http_fakes, storage_servers)
]

ROLE = "arn:aws:iam::123456789012:role/modelport-bench"
CREATE = "create (real-time, until InService)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--containers", action="store_true", help="also the image path")
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()

    from fake_aws import FakeAWS

    from modelport.deployers import connect
    from modelport.model_format.package import load
    from modelport.plugins.testing import make_test_package

    tmp = Path(tempfile.mkdtemp(prefix="modelport-sagemaker-bench-"))
    v1 = make_test_package(tmp / "v1.mport", scale=1.0, version="1")
    v2 = make_test_package(tmp / "v2.mport", scale=2.0, version="2")
    samples: dict[str, list[float]] = {}
    calls: dict[str, list[int]] = {}
    os.environ["MODELPORT_HOME"] = str(tmp / "home")
    with FakeAWS() as fake:
        for name in fake.conflicting_env():
            del os.environ[name]
        os.environ.update(fake.env)
        os.environ.pop("AWS_MAX_ATTEMPTS", None)

        def measure(label: str, action: Callable[[], Any]) -> Any:
            fake.clear_calls()
            seconds, result = timed(action)
            samples.setdefault(label, []).append(seconds)
            calls.setdefault(label, []).append(len(fake.calls()))
            return result

        target = connect(
            "sagemaker:/us-east-1",
            {"role_arn": ROLE, "image_uri": f"{fake.registry}/modelport-runtime:bench"},
        )
        with load(v1) as package, load(v2) as package_v2:
            for _ in range(args.rounds):
                name = f"bench-{uuid.uuid4().hex[:8]}"
                steps: list[tuple[str, Callable[[], Any]]] = [
                    (PLAN, lambda n=name: target.plan(n, package)),
                    (CREATE, lambda n=name: target.create(n, package)),
                    (UPDATE, lambda n=name: target.update(n, package_v2)),
                    (DELETE, lambda n=name: target.delete(n)),
                ]
                for label, action in steps:
                    measure(label, action)
        if args.containers:
            from docker_fixtures import base_image, engine

            fake.hosting = "container"
            repository = f"modelport-runtime-bench-{uuid.uuid4().hex[:8]}"
            target = connect(
                "sagemaker:/us-east-1",
                {
                    "role_arn": ROLE,
                    "base_image": base_image(engine()),
                    "ecr_repository": repository,
                    "startup_timeout": "300",
                },
            )
            with load(v1) as package, load(v2) as package_v2:
                measure("container: first model (push to a new repository)",
                        lambda: target.create("bench-first", package))  # fmt: skip
                measure("container: second model, same requirements (no build)",
                        lambda: target.create("bench-second", package_v2))  # fmt: skip
                for name in ("bench-first", "bench-second"):
                    target.delete(name)
    print_table(
        f"sagemaker target against the offline AWS, {args.rounds} round(s); medians (min-max)",
        samples,
        {"calls": calls},
    )
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "calls": calls}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
