"""The suite's own guard: no test connects anywhere but this machine (see ``conftest.py``)."""

from __future__ import annotations

import os
import socket

import pytest


@pytest.mark.parametrize(
    "address", [("169.254.169.254", 80), ("10.0.0.1", 443), ("example.com", 80)]
)
def test_a_connection_off_this_machine_is_refused(address: tuple[str, int]) -> None:
    with socket.socket() as sock, pytest.raises(OSError, match=r"only 127\.0\.0\.1"):
        sock.connect(address)


def test_credential_chains_and_telemetry_are_told_to_stay_home() -> None:
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert os.environ["NO_GCE_CHECK"] == "true"  # google-auth compares with "true" exactly
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert "127.0.0.1" in os.environ["NO_PROXY"].split(",")
