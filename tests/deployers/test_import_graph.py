"""The layout's rules, checked on the source: nothing under deployers/ or image/ imports the CLI;
kit/ and image/ import no cloud SDK and no docker-py; a target never imports another target."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from process_helpers import imports_after

SRC = Path(__file__).resolve().parents[2] / "src" / "modelport"
DEPLOYERS = SRC / "deployers"
#: Distributions the shared machinery must not need: cloud SDKs, docker-py and its transport.
SDKS = ("docker", "boto3", "botocore", "azure", "google", "sagemaker", "kubernetes", "requests")
TARGETS = sorted(p.name for p in DEPLOYERS.iterdir() if (p / "__init__.py").is_file())


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions, by absolute name."""
    tree = ast.parse(path.read_text("utf-8"))
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py"))


def test_the_targets_are_the_ones_expected() -> None:
    assert TARGETS == ["azureml", "docker", "kit", "local", "sagemaker", "vertex"]


#: Each cloud SDK, and the one folder of src/modelport allowed to import it.
SDK_HOMES = {
    "boto3": "deployers/sagemaker",
    "botocore": "deployers/sagemaker",
    "azure": "deployers/azureml",
    "google": "deployers/vertex",
}
#: What azureml's SDK loads when imported (azure-ai-ml, azure-identity, azure-core).
AZURE_MODULES = ("azure", "azure.ai.ml", "azure.identity", "azure.core")
#: What vertex's SDK loads (not "google" alone: google-cloud-aiplatform's *-nspkg.pth file puts
#: an empty "google" namespace module into every Python process at start).
GOOGLE_MODULES = ("google.cloud.aiplatform", "google.auth", "google.api_core", "google.oauth2")


@pytest.mark.parametrize("sdk", sorted(SDK_HOMES))
def test_each_cloud_sdk_is_imported_only_inside_its_target(sdk: str) -> None:
    home = SRC / SDK_HOMES[sdk]
    outside = [
        str(p.relative_to(SRC))
        for p in files(SRC)
        if home not in p.parents and any(m.split(".")[0] == sdk for m in imported_modules(p))
    ]
    assert outside == []


def test_importing_a_cloud_target_loads_no_sdk_until_it_talks_to_the_cloud() -> None:
    code = "import modelport.deployers.sagemaker\n"
    assert imports_after(code, ("boto3", "botocore")).imported == set()


def test_the_azureml_target_loads_no_azure_until_it_talks_to_azure() -> None:
    """Importing it, configuring it, naming its workspace and describing it import no azure."""
    code = (
        "import modelport\n"
        "from modelport.deployers import connect\n"
        "target = connect('azureml:/0b1f6471-1bf0-4dda-aec3-cb9272f09590/rg/ws1',"
        " {'instance_count': '2'}, environ={})\n"
        "target.check_name('churn')\n"
        "print(target.workspace.uri)\n"
        "from modelport.cli.main import main\n"
        "main(['targets', 'help', 'azureml'])\n"
    )
    check = imports_after(code, AZURE_MODULES)
    assert check.imported == set()
    assert "azureml:/0b1f6471-1bf0-4dda-aec3-cb9272f09590/rg/ws1" in check.stdout


def test_the_vertex_target_loads_no_google_until_it_talks_to_google() -> None:
    """Importing it, configuring it, checking a name and describing it import no google SDK."""
    code = (
        "import modelport\n"
        "from modelport.deployers import connect\n"
        "target = connect('vertex:/my-project-1/europe-west4', {'min_replicas': '2'}, environ={})\n"
        "target.check_name('churn')\n"
        "print(target.config.project, target.config.region)\n"
        "from modelport.cli.main import main\n"
        "main(['targets', 'help', 'vertex'])\n"
    )
    check = imports_after(code, GOOGLE_MODULES)
    assert check.imported == set()
    assert "my-project-1 europe-west4" in check.stdout


@pytest.mark.parametrize(
    "code", ["import modelport\n", "from modelport.cli.main import main\nmain(['--help'])\n"]
)
def test_modelport_and_its_help_import_no_cloud_sdk(code: str) -> None:
    assert imports_after(code, (*AZURE_MODULES, *GOOGLE_MODULES)).imported == set()


@pytest.mark.parametrize(
    "path", files(DEPLOYERS, SRC / "image"), ids=lambda p: str(p.relative_to(SRC))
)
def test_nothing_under_deployers_or_image_imports_the_cli(path: Path) -> None:
    cli = {
        m for m in imported_modules(path) if m == "modelport.cli" or m.startswith("modelport.cli.")
    }
    assert cli == set()


@pytest.mark.parametrize(
    "path", files(DEPLOYERS / "kit", SRC / "image"), ids=lambda p: str(p.relative_to(SRC))
)
def test_kit_and_image_import_no_sdk(path: Path) -> None:
    sdks = {m for m in imported_modules(path) if m.split(".")[0] in SDKS}
    assert sdks == set()


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "kit"])
def test_a_target_never_imports_another_target(target: str) -> None:
    others = {f"modelport.deployers.{t}" for t in TARGETS if t not in (target, "kit")}
    for path in files(DEPLOYERS / target):
        wrong = {m for m in imported_modules(path) if any(m.startswith(o) for o in others)}
        assert wrong == set(), path


def test_the_kit_and_image_load_without_any_sdk() -> None:
    """And for real: importing every module of kit/ and image/ loads no SDK."""
    modules = [
        ".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in files(DEPLOYERS / "kit", SRC / "image")
    ]
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    # google-cloud-aiplatform's .pth file puts an empty "google" namespace into every process.
    loaded = (*(s for s in SDKS if s != "google"), "google.auth", "google.cloud.aiplatform")
    assert imports_after(code, loaded).imported == set()


def test_the_walker_sees_relative_and_nested_imports() -> None:
    module = SRC / "deployers" / "kit" / "waiting.py"
    found = imported_modules(module)
    assert "modelport.deployers.kit.progress" in found
    assert "time" in found
