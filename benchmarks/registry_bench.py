"""OCI registries and signatures: push, pull and cache-hit times; sign and verify times.

A 100-tree RandomForest package (``--trees``) against a real ``docker-registry`` on 127.0.0.1
(the tests' ``tests/oci_servers.py``), so the network costs next to nothing and what is left is
modelport's own work: hashing, uploading and checking every layer and file.

Rows, each ``--rounds`` times into a fresh repository and a fresh ``MODELPORT_HOME``:

- push (cold): every blob uploaded; push again: every blob already there (HEADs only);
- pull (cold cache): the manifest, every layer streamed and checked, every file checked, the
  archive written to the cache; cached by tag: one HEAD for the tag's digest; cached by digest:
  no request at all;
- sign (``modelport.model_format.signing.sign`` of the archive, with a P-256 key) and verify
  (``verify_signature`` against the public key);
- serve from ``oci://…@digest`` under ``--trust require`` (cached), to the first 200.

    .venv/bin/python benchmarks/registry_bench.py [--rounds 5] [--trees 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from cloud_bench import summary  # noqa: E402
from sources_bench import _example, _first_prediction, _model  # noqa: E402

from signing_keys import ec_key_pair  # noqa: E402


def _timed(samples: dict[str, list[float]], label: str, step: Any, *args: Any, **kw: Any) -> Any:
    """``step(*args, **kw)``, its seconds added to ``samples[label]``."""
    started = time.perf_counter()
    result = step(*args, **kw)
    samples.setdefault(label, []).append(time.perf_counter() - started)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs per row")
    parser.add_argument("--trees", type=int, default=100, help="the RandomForest's trees")
    args = parser.parse_args()

    from oci_servers import registry_server  # noqa: I001 (tests/, put on the path above)
    from modelport.model_format.locate import locate
    from modelport.model_format.remote.cache import PackageCache
    from modelport.model_format.remote.oci import push
    from modelport.model_format.signing import read_signature, sign, verify_signature

    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
        work = Path(tmp)
        package = _model(work / "rf.mport", args.trees)
        body = json.dumps({"inputs": _example(package)}).encode()
        private, public = ec_key_pair(work / "keys", "bench")
        signed = work / "rf-signed.mport"
        print(f"package: RandomForest, {args.trees} trees, {package.stat().st_size / 1e6:.2f} MB")
        with registry_server(work / "registry") as registry:
            for i in range(args.rounds):
                shutil.copyfile(package, signed)
                _timed(samples, "sign (P-256 key)", sign, signed, key=private)
                _timed(samples, "verify signature", verify_signature, signed, [public])
                ref = f"oci://{registry.host}/bench/{uuid.uuid4().hex[:8]}/rf:1"
                bundle = read_signature(signed)
                result = _timed(
                    samples,
                    "push (cold)",
                    push,
                    signed,
                    ref,
                    signature=bundle,
                    insecure=True,
                )
                _timed(
                    samples,
                    "push again (nothing to upload)",
                    push,
                    signed,
                    ref,
                    signature=bundle,
                    insecure=True,
                )
                home = work / f"home-{i}"
                os.environ["MODELPORT_HOME"] = str(home)
                options = {"insecure": True}
                cache = PackageCache(home / "cache")
                _timed(
                    samples,
                    "pull (cold cache)",
                    locate,
                    ref,
                    storage_options=options,
                    cache=cache,
                )
                _timed(
                    samples,
                    "pull cached, by tag (1 HEAD)",
                    locate,
                    ref,
                    storage_options=options,
                    cache=cache,
                )
                pinned = f"{ref.rsplit(':', 1)[0]}@{result.digest}"
                _timed(
                    samples,
                    "pull cached, by digest (no request)",
                    locate,
                    pinned,
                    storage_options=options,
                    cache=cache,
                )
                env = {
                    **os.environ,
                    "MODELPORT_STORAGE_OPTIONS": json.dumps({"oci": options}),
                    "MODELPORT_TRUST": "require",
                    "MODELPORT_TRUSTED_KEYS": str(public),
                }
                samples.setdefault("serve oci://…@digest, require, to 1st 200", []).append(
                    _first_prediction(pinned, env, body)
                )
                samples.setdefault("serve the local archive, off, to 1st 200", []).append(
                    _first_prediction(str(package), {**os.environ}, body)
                )
    width = max(len(k) for k in samples)
    print(f"\n{'seconds':<{width}}  {'median (min-max)':>24}")
    for label, values in samples.items():
        print(f"{label:<{width}}  {summary(values):>24}")


if __name__ == "__main__":
    main()
