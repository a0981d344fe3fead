"""The quickstart example runs end to end, as `make demo` runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import modelport

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_packs_verifies_and_predicts(tmp_path: Path) -> None:
    script = ROOT / "examples" / "sklearn_quickstart" / "quickstart.py"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "$ modelport verify" in result.stdout
    assert "OK:" in result.stdout
    package = modelport.load(tmp_path / "breast-cancer.mport")
    assert package.name == "breast-cancer"
    assert package.version == "1.0.0"
    assert modelport.verify(tmp_path / "breast-cancer.mport").ok
    predictions = json.loads(result.stdout.strip().splitlines()[-1])["predictions"]
    assert set(predictions) == {"label", "probabilities"}
    assert len(predictions["label"]) == 3
    package.close()
