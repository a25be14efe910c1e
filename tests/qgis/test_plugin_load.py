"""The plugin loads in QGIS as QGIS loads it: metadata, classFactory, provider, unload."""

from __future__ import annotations

import ast
import configparser
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import qgis.utils
from qgis.core import QgsApplication, QgsProcessingProvider
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QDockWidget

REQUIRED_METADATA = (
    "name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository",
)
PROVIDER_ID = "mosaic"


def _registry_provider() -> QgsProcessingProvider | None:
    return QgsApplication.processingRegistry().providerById(PROVIDER_ID)


@pytest.fixture
def metadata(repo_root: Path) -> configparser.SectionProxy:
    """metadata.txt parsed like QGIS does (configparser, interpolation on)."""
    parser = configparser.ConfigParser()
    parser.read(repo_root / "metadata.txt", encoding="utf-8")
    return parser["general"]


@pytest.fixture
def qgis_plugin_paths(plugin_parent: Path) -> Iterator[None]:
    """Make QGIS's plugin machinery (qgis.utils) see the plugin as installed folder ``mosaic``."""
    saved = (qgis.utils.plugin_paths, qgis.utils.available_plugins, qgis.utils.plugins_metadata_parser)
    qgis.utils.plugin_paths = [str(plugin_parent)]
    qgis.utils.updateAvailablePlugins()
    yield
    for name in list(qgis.utils.active_plugins):
        if name == "mosaic":
            qgis.utils.unloadPlugin(name)
    qgis.utils.plugin_paths, qgis.utils.available_plugins, qgis.utils.plugins_metadata_parser = saved


def test_metadata_has_every_required_field(metadata: configparser.SectionProxy, repo_root: Path) -> None:
    for key in REQUIRED_METADATA + ("tracker", "homepage", "icon", "category", "tags", "changelog"):
        assert metadata.get(key, "").strip(), f"metadata.txt lacks {key}"
    assert metadata["name"] == "MoSAiC"
    assert metadata["qgisMinimumVersion"] == "3.22"
    assert metadata["version"] == "0.1.0"
    assert metadata["hasProcessingProvider"] == "yes"
    assert metadata["category"] == "Raster"
    assert metadata.getboolean("experimental") is True
    for key in ("repository", "tracker", "homepage"):  # clearly placeholders until the repository is public
        assert metadata[key].startswith("https://example.org/mosaic-qgis"), key
    assert (repo_root / metadata["icon"]).is_file()
    # the versions tested: 3.22 (make test) and 3.40 LTR (make test-qgis-lts)
    assert (metadata["qgisMinimumVersion"], metadata["qgisMaximumVersion"]) == ("3.22", "3.40")
    licence = (repo_root / "LICENSE").read_text()  # the plugin repository requires one in the zip
    assert "GPL-2.0-or-later" in licence and "GNU GENERAL PUBLIC LICENSE" in licence


def test_the_zip_carries_the_licence(repo_root: Path) -> None:
    """`make package`'s zip (committed files) holds LICENSE beside metadata.txt under mosaic/."""
    import subprocess
    import zipfile

    subprocess.run(["make", "-s", "package"], cwd=repo_root, check=True, capture_output=True)
    names = set(zipfile.ZipFile(repo_root / "dist" / "mosaic.zip").namelist())
    assert {"mosaic/LICENSE", "mosaic/metadata.txt", "mosaic/mosaic_qgis/plugin.py"} <= names


def test_qgis_finds_the_plugin(qgis_plugin_paths: None) -> None:
    assert "mosaic" in qgis.utils.available_plugins
    assert qgis.utils.pluginMetadata("mosaic", "name") == "MoSAiC"
    assert qgis.utils.pluginMetadata("mosaic", "hasProcessingProvider") == "yes"


def test_class_factory_init_gui_and_unload(qgis_iface) -> None:
    import mosaic
    from mosaic.mosaic_qgis.provider import ALGORITHMS

    assert _registry_provider() is None
    for _cycle in range(2):
        plugin = mosaic.classFactory(qgis_iface)
        plugin.initGui()
        plugin.initProcessing()  # QGIS may call both; must not register twice
        provider = _registry_provider()
        assert provider is not None
        assert provider.name() == "MoSAiC"
        assert not provider.icon().pixmap(16, 16).isNull()
        assert sorted(alg.name() for alg in provider.algorithms()) == sorted(cls().name() for cls in ALGORITHMS)
        assert sorted(alg.id() for alg in provider.algorithms()) == ["mosaic:classify", "mosaic:embed", "mosaic:finetune"]
        assert plugin.dock is not None and plugin.dock.parent() is qgis_iface.mainWindow()
        import torch

        from mosaic.core.engine import model_cache  # a model kept from an earlier run is freed on unload
        from mosaic.core.paths import RESOURCES
        model_cache.engine_model(str(RESOURCES / "models" / "mosaic-small-ben19"), torch.device("cpu"))
        assert model_cache._kept is not None
        plugin.unload()
        assert model_cache._kept is None
        assert _registry_provider() is None
        assert plugin.dock is None and plugin.actions == []
        QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
        assert qgis_iface.mainWindow().findChildren(QDockWidget, "MosaicDock") == []
        plugin.unload()  # a second unload is harmless


def test_qgis_starts_and_unloads_the_plugin(qgis_plugin_paths: None) -> None:
    """The desktop path (startPlugin -> initGui) and the qgis_process path (initProcessing)."""
    for start in (qgis.utils.startPlugin, qgis.utils.startProcessingPlugin):
        assert qgis.utils.loadPlugin("mosaic")
        assert start("mosaic"), f"{start.__name__} failed"
        assert _registry_provider() is not None
        assert qgis.utils.unloadPlugin("mosaic")
        assert _registry_provider() is None
        assert "mosaic" not in sys.modules


def test_loading_the_plugin_does_not_import_heavy_packages(plugin_parent: Path) -> None:
    """Loading must stay cheap: torch and friends are imported only when a tool runs."""
    script = textwrap.dedent(
        """
        import json, sys
        from qgis.core import QgsApplication
        app = QgsApplication([], False)
        app.initQgis()
        import mosaic
        plugin = mosaic.classFactory(None)
        plugin.initGui()
        registered = QgsApplication.processingRegistry().providerById("mosaic") is not None
        heavy = sorted(m for m in ("torch", "sklearn", "safetensors", "pyarrow") if m in sys.modules)
        plugin.unload()
        app.exitQgis()
        print(json.dumps({"registered": registered, "heavy": heavy}))
        """
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(plugin_parent))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"registered": True, "heavy": []}


def _imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_plugin_uses_qgis_pyqt_only(repo_root: Path) -> None:
    """qgis.PyQt, not PyQt5, so the plugin survives the move to Qt 6."""
    files = [repo_root / "__init__.py", *sorted((repo_root / "mosaic_qgis").rglob("*.py"))]
    offenders = [
        f"{path.relative_to(repo_root)}: {module}"
        for path in files
        for module in _imported_modules(path)
        if module.split(".")[0] in ("PyQt5", "PyQt6", "sip")
    ]
    assert offenders == []


def test_core_never_imports_qgis(repo_root: Path) -> None:
    offenders = [
        f"{path.relative_to(repo_root)}: {module}"
        for path in sorted((repo_root / "core").rglob("*.py"))
        for module in _imported_modules(path)
        if module.split(".")[0] in ("qgis", "PyQt5", "PyQt6")
    ]
    assert offenders == []
