"""A damaged archive is refused even where the damage sits past the last tar block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import modelport
from modelport.errors import PackageError


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    x = np.random.default_rng(2).normal(size=(30, 3)).astype(np.float32)
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    path = tmp_path_factory.mktemp("damage") / "m.mport"
    modelport.pack(model, path, example=x[:5]).close()
    return path.read_bytes()


def test_missing_gzip_trailer_is_refused(archive: bytes, tmp_path: Path) -> None:
    damaged = tmp_path / "truncated.mport"
    damaged.write_bytes(archive[:-8])  # drop the CRC32 and length
    with pytest.raises(PackageError, match="damaged archive"):
        modelport.load(damaged)
    with pytest.raises(PackageError, match="damaged archive"):
        modelport.verify(damaged)


def test_wrong_crc_is_refused(archive: bytes, tmp_path: Path) -> None:
    data = bytearray(archive)
    data[-8] ^= 0xFF  # the CRC32 of the uncompressed bytes
    damaged = tmp_path / "crc.mport"
    damaged.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="damaged archive"):
        modelport.load(damaged)
