"""How long the vertex target's verbs take against the offline Vertex, and how many Vertex API
requests they make.

The Vertex is the tests' fake (``tests/deployers/vertex/fake_vertex.py``): one plain-HTTP server
on 127.0.0.1 answering Vertex AI's REST API (v1) as google-cloud-aiplatform's REST transport
expects, with deployed models that really serve (the package baked into a small image pushed to
the local registry, run as a ``modelport`` process: no image build). The client is the real
google-cloud-aiplatform, with a service account key whose tokens the fake signs. So the figures
are modelport's and the SDK's own work plus the fake's host start-up, not Google's: on Vertex a
deployModel takes minutes to provision and that wait dominates. What they show is what
modelport adds on top, and how many requests each verb sends to the Vertex API.

Long-running operations (upload, endpoint create and delete, deployModel, undeployModel, model
delete) are done when the request answers (the default), or, with ``--pending-polls K``, say
``done: false`` to the request and to their first ``K - 1`` polls, so the SDK really polls (as
it does against Vertex, at its own pace).

Per round (``--rounds``, medians reported): ``deploy --dry-run`` (plan), create, update to
another package (blue/green: the new version deployed beside the old one, all traffic to it,
the old one removed), a canary update (10 % to the new version), its promote, delete.

Needs the local registry (``source .ci/setup-containers.sh``, or ``$MODELPORT_TEST_REGISTRY``).

Run::

    .venv/bin/python benchmarks/vertex_bench.py [--rounds 5] [--pending-polls 0] [--json out.json]
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

from cloud_bench import lifecycle, print_table, timed  # beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT / "tests" / "deployers" / "vertex"),
    str(ROOT / "tests" / "deployers"),
    str(ROOT / "tests"),  # the fakes' shared helpers (http_fakes, storage_servers)
]

#: Where google-auth would look for the GCE metadata server: a closed port of this machine.
CLOSED_METADATA = "127.0.0.1:9"
#: Variables that would send google-auth or the SDK to a real project (besides the prefixes).
GOOGLE_NAMES = ("GCLOUD_PROJECT", "CLOUD_ML_REGION")
GOOGLE_PREFIXES = ("GOOGLE_", "CLOUDSDK_", "MODELPORT_VERTEX_")


def offline_google(tmp: Path) -> None:
    """Keep google-auth and the SDK off the metadata server and the developer's projects.

    Before google-auth is imported: it reads ``NO_GCE_CHECK`` (exactly "true") once.
    """
    for name in list(os.environ):
        if name.startswith(GOOGLE_PREFIXES) or name in GOOGLE_NAMES:
            del os.environ[name]
    gcloud = tmp / "gcloud"  # gcloud's configuration: an empty folder
    gcloud.mkdir()
    os.environ.update(
        NO_GCE_CHECK="true",
        GCE_METADATA_HOST=CLOSED_METADATA,
        GCE_METADATA_IP=CLOSED_METADATA,
        CLOUDSDK_CONFIG=str(gcloud),
        MODELPORT_HOME=str(tmp / "home"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--pending-polls",
        type=int,
        default=0,
        metavar="K",
        help="each operation answers done: false to its request and K - 1 polls (0: done at once)",
    )
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()
    if args.rounds < 1 or args.pending_polls < 0:
        parser.error("--rounds must be at least 1 and --pending-polls at least 0")

    tmp = Path(tempfile.mkdtemp(prefix="modelport-vertex-bench-"))
    offline_google(tmp)
    from fake_vertex import FakeVertex
    from registry_images import push_process_image
    from vertex_support import vertex_target, write_key

    from modelport.model_format.package import load
    from modelport.plugins.testing import make_test_package

    v1 = make_test_package(tmp / "v1.mport", scale=1.0, version="1")
    v2 = make_test_package(tmp / "v2.mport", scale=2.0, version="2")
    samples: dict[str, list[float]] = {}
    requests: dict[str, list[int]] = {}
    polls: dict[str, list[int]] = {}
    with FakeVertex() as fake:
        fake.pending_polls = args.pending_polls
        repository = "modelport-vertex-bench"
        run = uuid.uuid4().hex[:8]
        try:
            image_v1 = push_process_image(fake.registry, v1, repository, f"v1-{run}")
            image_v2 = push_process_image(fake.registry, v2, repository, f"v2-{run}")
        except OSError as exc:
            print(f"no registry at {fake.registry} ({exc}): source .ci/setup-containers.sh")
            return 3
        key = write_key(tmp / "key.json", fake.token_uri)

        def measure(label: str, action: Callable[[], Any]) -> Any:
            fake.clear_calls()
            seconds, result = timed(action)
            samples.setdefault(label, []).append(seconds)
            requests.setdefault(label, []).append(len(fake.calls("vertex")))
            polls.setdefault(label, []).append(len(fake.calls("poll")))
            return result

        # The images as they are: registry=None drops the test registry fake_options names.
        serving_v1 = vertex_target(fake, key, image=image_v1, registry=None)
        serving_v2 = vertex_target(fake, key, image=image_v2, registry=None)
        canary_v1 = vertex_target(fake, key, image=image_v1, registry=None, canary_percent=10)
        with load(v1) as package, load(v2) as package_v2:
            for _ in range(args.rounds):
                name = f"bench-{uuid.uuid4().hex[:8]}"
                for label, action in lifecycle(
                    name, serving_v1, serving_v2, canary_v1, package, package_v2
                ):
                    measure(label, action)
                left = fake.endpoints(), fake.models()
                if any(left):
                    raise SystemExit(f"the round left {left} behind")
    operations = (
        f"operations pending for {args.pending_polls} poll(s)"
        if args.pending_polls
        else "operations done at once"
    )
    print_table(
        f"vertex target against the offline Vertex ({operations}), {args.rounds} round(s); "
        "medians (min-max)",
        samples,
        {"API requests": requests, "polls": polls},
    )
    if args.json:
        found = {
            "pending_polls": args.pending_polls,
            "samples": samples,
            "vertex_requests": requests,
            "polls": polls,
        }
        args.json.write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
