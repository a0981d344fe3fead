"""The echo target against modelport's contract suite: every rule a target must follow.

Subclassing DeployerContract and providing a `deployer` fixture is all it takes; the suite packs
two tiny models itself and checks create, get, list, update, delete, predict, logs, the dry run,
and, by making each step of create and update fail in turn, that failures leave nothing behind.
"""

from pathlib import Path

import pytest
from modelport_echo import EchoConfig, EchoDeployer

from modelport.plugins.testing import DeployerContract


class TestEchoContract(DeployerContract):
    @pytest.fixture
    def deployer(self, tmp_path: Path) -> EchoDeployer:
        return EchoDeployer(EchoConfig(root=tmp_path / "echo"))

    def assert_gone(self, deployer: EchoDeployer, name: str) -> None:  # type: ignore[override]
        super().assert_gone(deployer, name)
        # Target-specific: no directory (not even a staging one) is left for this name.
        leftovers = (
            [p.name for p in deployer.root.glob(f"*{name}*")] if deployer.root.exists() else []
        )
        assert leftovers == []


def test_uri_sets_the_root(tmp_path: Path) -> None:
    assert EchoDeployer.options_from_uri(str(tmp_path)) == {"root": str(tmp_path)}
