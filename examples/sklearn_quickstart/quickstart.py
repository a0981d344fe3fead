"""modelport quickstart: train a scikit-learn pipeline, pack it, verify it, predict with it.

Run it with `make demo` (or `python examples/sklearn_quickstart/quickstart.py [OUT_DIR]`). The data
set ships with scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelport


def cli(*args: str) -> str:
    """Run the modelport CLI the way a user would, echoing the command and its output."""
    modelport_exe = shutil.which("modelport", path=str(Path(sys.executable).parent))
    command = [modelport_exe or "modelport", *args]
    print(f"\n$ modelport {' '.join(args)}")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    print(result.stdout.rstrip() or result.stderr.rstrip())
    if result.returncode != 0:
        sys.exit(f"modelport {args[0]} failed with exit code {result.returncode}")
    return result.stdout


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    features, target = load_breast_cancer(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, _ = train_test_split(features, target, random_state=0)
    pipeline = make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=50, random_state=0)
    )
    pipeline.fit(x_train, y_train)

    # 1. Pack: convert to ONNX, check it against scikit-learn on the example, write the archive.
    package_path = out_dir / "breast-cancer.mport"
    package = modelport.pack(
        pipeline,
        package_path,
        name="breast-cancer",
        version="1.0.0",
        example=x_test.head(20),
        metadata={"dataset": "sklearn breast_cancer"},
        overwrite=True,
    )
    parity = package.manifest.flavor.settings["converted_from"]["max_abs_diff"]
    print(f"packed {package.name} {package.version}: {package_path}")
    print(f"  digest {package.digest}")
    print(
        f"  {len(package.signature.inputs)} inputs (one per column), outputs "
        f"{', '.join(package.signature.output_names)}; parity {dict(parity)}"
    )

    # 2. Predict in-process with the Python API (a DataFrame, as scikit-learn takes it; a dict of
    #    columns or a list of records work too), and compare with scikit-learn itself.
    rows = x_test.head(3)
    outputs = package.predict(rows)
    expected = pipeline.predict_proba(rows)
    print(
        f"  labels {outputs['label'].tolist()}; max difference to scikit-learn "
        f"{float(np.abs(outputs['probabilities'] - expected).max()):.1e}"
    )
    package.close()

    # 3. The same through the CLI: verify every file, then predict on an MLflow-style request.
    #    The same rows as CSV (header row: the column names) are for `modelport serve`.
    request = out_dir / "request.json"
    request.write_text(json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split"))}))
    rows.to_csv(out_dir / "request.csv", index=False)
    cli("verify", str(package_path))
    cli("predict", str(package_path), "-i", str(request))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/quickstart"))
