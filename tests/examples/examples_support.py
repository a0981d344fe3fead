"""What the example tests share: the bundled example's run, and the README's code blocks."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "sklearn_quickstart" / "quickstart.py"
README = ROOT / "README.md"


@dataclass(frozen=True)
class Quickstart:
    """A finished quickstart run: where it ran (``build/quickstart/`` is under it), its output."""

    cwd: Path
    result: subprocess.CompletedProcess[str]

    @property
    def out_dir(self) -> Path:
        """What it wrote: the package, ``request.json`` and ``request.csv``."""
        return self.cwd / "build" / "quickstart"


def readme_blocks(language: str) -> list[str]:
    """The README's fenced code blocks in ``language`` (``python``, ``bash``), in order."""
    return re.findall(rf"```{language}\n(.*?)```", README.read_text("utf-8"), flags=re.DOTALL)
