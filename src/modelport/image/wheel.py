"""A wheel of the modelport running here, for images built from a source checkout."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import zipfile
from pathlib import Path

#: Fixed zip timestamps: the same modelport gives the same wheel, so builds hit the layer cache.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def build_modelport_wheel(dest: Path) -> Path:
    """Write a wheel of the modelport running here (editable or not) into ``dest``.

    The image must run the same modelport that made the context, which may be a source checkout
    that no index has. Its files and metadata are all installed here, so this zips them the way
    ``pip wheel`` would (pure Python, ``py3-none-any``), deterministically, without setuptools,
    a build backend or network access.

    Returns:
        The wheel's path.
    """
    import modelport

    dist = importlib.metadata.distribution("modelport")
    version = dist.version
    root = Path(modelport.__file__).resolve().parent
    files: list[tuple[str, bytes]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or "__pycache__" in rel.parts
            or path.suffix in (".pyc", ".pyo")
            or any(part.startswith(".") for part in rel.parts)
        ):
            continue
        files.append((f"modelport/{rel.as_posix()}", path.read_bytes()))

    info = f"modelport-{version}.dist-info"
    metadata = (
        dist.read_text("METADATA")
        or f"Metadata-Version: 2.1\nName: modelport\nVersion: {version}\n"
    )
    files.append((f"{info}/METADATA", metadata.encode()))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        files.append((f"{info}/entry_points.txt", entry_points.encode()))
    wheel_meta = (
        "Wheel-Version: 1.0\nGenerator: modelport\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files.append((f"{info}/WHEEL", wheel_meta.encode()))
    files.append((f"{info}/top_level.txt", b"modelport\n"))
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files)
    record += f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))

    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"modelport-{version}-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            entry = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    wheel.write_bytes(buffer.getvalue())
    return wheel
