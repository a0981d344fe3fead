"""The model inside one server process: loading, warm-up, readiness, and the road to a prediction.

Every route ends in :meth:`ModelService.predict`: signature enforcement (the package format's one
enforcement path), the server's own rule that a request holds at least one value per input, then
the dynamic batcher.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InputError, ModelportError, NotReady
from modelport.model_format.package import Package, load, read_manifest
from modelport.model_format.signature import DTYPES, JsonBooleans, Signature
from modelport.serving.batcher import Batcher, BatchObserver
from modelport.serving.config import ServeConfig
from modelport.serving.turns import TURNS

log = logging.getLogger("modelport.serving")

#: Longest a prediction request waits for a worker that is still loading the model.
READY_WAIT_S = 10.0


def warmup_inputs(package: Package, example: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The package's example, or one row of zeros shaped from the signature."""
    if example is not None:
        return example
    arrays: dict[str, np.ndarray] = {}
    for spec in package.signature.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        if spec.dtype == "string":
            arrays[spec.name] = np.full(shape, "", dtype=object)
        else:
            arrays[spec.name] = np.zeros(shape, dtype=DTYPES[spec.dtype])
    return arrays


def _first_row(arrays: Mapping[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
    if not all(s.shape and s.shape[0] == -1 for s in signature.inputs):
        return dict(arrays)
    return {n: a[:1] for n, a in arrays.items()}


class ModelService:
    """One process's model: loaded once, warmed up, then shared by every request thread.

    Args:
        config: the server's configuration.
        package_dir: the package directory to load (an archive is extracted by the server first).
        observer: where the batcher reports batch sizes and queue depth.
        on_ready: called with the load time in seconds once the model is warm.
    """

    def __init__(
        self,
        config: ServeConfig,
        package_dir: Path,
        observer: BatchObserver,
        on_ready: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        self.package_dir = package_dir
        self.manifest = read_manifest(package_dir, config.archive_limits)
        self.signature = self.manifest.signature
        self.name = self.manifest.name
        self.version = self.manifest.version
        self.ready = threading.Event()
        self.package: Package | None = None
        self.batcher: Batcher | None = None
        self._observer = observer
        self._on_ready = on_ready
        self._timeout = config.timeout_s

    def load(self) -> None:
        """Load the package, warm it up, start the batcher and become ready.

        Raises:
            PackageError: the package is invalid.
            ModelError: the warm-up prediction on the package's own example failed.
        """
        started = time.perf_counter()
        package = load(
            self.package_dir,
            allow_code=self.config.allow_code,
            limits=self.config.archive_limits,
            threads=self.config.ort_threads,
        )
        example = package.example()
        inputs = warmup_inputs(package, example)
        try:
            # The whole example, then one row: the two shapes most requests will have.
            package.predict_arrays(inputs)
            package.predict_arrays(_first_row(inputs, package.signature))
        except ModelportError:
            if example is not None:
                raise
            # Zeros are a guess at a valid input; a model may refuse them.
            log.warning("warm-up on zeros failed; the model will warm up on its first request")
        self.package = package
        self.batcher = Batcher(
            package.predict_arrays,
            package.signature,
            max_batch_size=self.config.max_batch_size,
            max_wait_s=self.config.max_batch_wait_s,
            observer=self._observer,
            enabled=self.config.batching,
        )
        seconds = time.perf_counter() - started
        self.ready.set()
        if self._on_ready is not None:
            self._on_ready(seconds)
        log.info(
            "model %s %s ready in %.3f s (batching %s)",
            self.name,
            self.version,
            seconds,
            "on" if self.batcher.merging else "off",
        )

    def start(self, on_failure: Callable[[BaseException], None]) -> threading.Thread:
        """Load in a background thread, so health checks answer 503 meanwhile."""

        def run() -> None:
            try:
                self.load()
            except BaseException as exc:
                on_failure(exc)

        thread = threading.Thread(target=run, name="modelport-loader", daemon=True)
        thread.start()
        return thread

    def check_ready(self) -> None:
        """Raise :class:`NotReady` unless the model is loaded and warmed up (health routes)."""
        if not self.ready.is_set():
            raise NotReady("the model is not ready yet")

    def wait_ready(self) -> Batcher:
        """Return the batcher once the model is ready (waiting briefly for a loading worker).

        Raises:
            NotReady: still loading after :data:`READY_WAIT_S`.
        """
        batcher = self.batcher
        if batcher is not None:
            return batcher
        with TURNS.paused():
            self.ready.wait(min(READY_WAIT_S, self._timeout))
        if self.batcher is None:
            raise NotReady("the model is not ready yet; retry shortly")
        return self.batcher

    def predict(self, parse: Callable[[], tuple[Any, JsonBooleans]]) -> dict[str, np.ndarray]:
        """Parse a request, enforce the signature and predict (possibly batched).

        Args:
            parse: reads the request and returns ``{input name: array-like}`` (or one array-like
                for a single-input model) and whether its values may hold booleans (the
                signature's lossless-JSON rule then walks for them); called once the model is
                ready.

        Raises:
            NotReady: the model is still loading.
            InputError: the inputs do not match the signature, or one is empty.
            ModelError: the model failed.
            Overloaded: no result within the server's timeout.
        """
        batcher = self.wait_ready()
        # Announce the request before reading its body, so a forming batch may wait for it.
        batcher.expect()
        try:
            inputs, booleans = parse()
            arrays = self.signature.enforce(inputs, booleans)
            for name, array in arrays.items():
                if array.size == 0:
                    raise InputError(f"input {name!r} is empty; send at least one row")
        except BaseException:
            batcher.unexpect()
            raise
        return batcher.predict(arrays, self._timeout, announced=True)
