"""Missing dependencies: the plugin loads, explains, and plans a pinned install (never run here)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
from qgis.core import Qgis, QgsApplication, QgsProcessingContext, QgsTask

from mosaic.mosaic_qgis import deps


@pytest.fixture
def without_torch(monkeypatch):
    """QGIS's Python as if torch were not installed (find_spec finds nothing)."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "torch" or name.startswith("torch.") else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert deps.missing_modules() == ["torch"]


def test_nothing_missing_here() -> None:
    assert deps.missing_modules() == []


def test_plugin_loads_and_explains_without_torch(without_torch, qgis_iface, qgis_processing) -> None:
    import mosaic

    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    plugin = mosaic.classFactory(qgis_iface)
    plugin.initGui()
    try:
        item = bar.currentItem()
        assert item is not None and item.level() == Qgis.Warning
        assert "MoSAiC needs the Python package(s) torch" in item.text()
        assert "Install Python dependencies" in item.text()
        buttons = [w for w in item.findChildren(object) if type(w).__name__ == "QPushButton"]
        assert [b.text() for b in buttons] == ["Install…"]

        provider = QgsApplication.processingRegistry().providerById("mosaic")
        assert provider is not None and provider.longName() == "MoSAiC (needs torch)"
        alg = QgsApplication.processingRegistry().createAlgorithmById("mosaic:classify")
        ok, message = alg.canExecute()
        assert not ok and "torch" in message
        ok, message = alg.checkParameterValues({}, QgsProcessingContext())
        assert not ok and "MoSAiC needs the Python package(s) torch" in message

        qgis_iface.messageBar().clear_messages()
        assert plugin.dock.start("classify") is None
        assert any("torch" in m for m in qgis_iface.messageBar().get_messages(Qgis.Critical))
    finally:
        plugin.unload()
        bar.clearWidgets()
    assert QgsApplication.processingRegistry().providerById("mosaic") is None


def test_install_plan_pins_numpy_and_picks_the_torch_build(without_torch, monkeypatch) -> None:
    monkeypatch.setattr(deps, "cuda_driver_version", lambda: None)
    plan = deps.install_plan(deps.missing_modules(), python="/usr/bin/python3")
    assert plan.torch_tag == "cpu"
    assert plan.constraints == f"numpy=={numpy.__version__}\n"
    (command,) = plan.commands
    assert command[:4] == ["/usr/bin/python3", "-m", "pip", "install"]
    assert command[command.index("--prefix") + 1] == str(plan.staging) and "--target" not in command
    assert plan.staging.parent == plan.prefix.parent == deps.deps_dir()
    assert command[command.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert command[-1] == "torch"
    monkeypatch.setattr(deps, "cuda_driver_version", lambda: (12, 4))
    assert deps.install_plan(["torch", "sklearn"], python="py").torch_tag == "cu124"
    both = deps.install_plan(["torch", "sklearn"], python="py", driver=None).commands
    assert len(both) == 2 and both[1][-1] == "scikit-learn" and "--index-url" not in both[1]
    offline = deps.install_plan(["torch", "sklearn"], python="py", driver=None, wheels=Path("/media/wheels"))
    for command in offline.commands:  # only the folder: no index, no PyTorch index
        assert command[command.index("--find-links") + 1] == "/media/wheels" and "--no-index" in command
        assert "--index-url" not in command
    assert "the wheel folder /media/wheels (offline)" in offline.describe()


QGIS_PYTHONS = {  # platform: (sys.executable in QGIS, sys.exec_prefix, the python that exists, expected)
    "linux": ("/usr/bin/qgis", "/usr", "/usr/bin/python3.11", "/usr/bin/python3.11"),
    "darwin": ("/Applications/QGIS-LTR.app/Contents/MacOS/QGIS", "/Applications/QGIS-LTR.app/Contents/MacOS",
               "/Applications/QGIS-LTR.app/Contents/MacOS/bin/python3.11",
               "/Applications/QGIS-LTR.app/Contents/MacOS/bin/python3.11"),
    "win32": ("C:\\OSGeo4W\\bin\\qgis-ltr-bin.exe", "C:\\OSGeo4W\\apps\\Python312",
              "C:\\OSGeo4W\\apps\\Python312\\python.exe", "C:\\OSGeo4W\\apps\\Python312\\python.exe"),
}


@pytest.mark.parametrize("platform", list(QGIS_PYTHONS))
def test_the_installer_uses_qgis_own_python_on_each_platform(platform, monkeypatch) -> None:
    """Never a python from PATH (the issue: a pyenv shim got the packages); the plan runs pip with it."""
    executable, prefix, exists, expected = QGIS_PYTHONS[platform]
    monkeypatch.setattr(deps.shutil, "which", lambda name: "/root/.pyenv/shims/python3")
    found = deps.qgis_python(platform, executable, prefix, (3, 11), is_file=lambda p: p == exists)
    assert found == expected
    plan = deps.install_plan(["sklearn"], python=found, driver=None)
    assert plan.commands[0][:3] == [expected, "-m", "pip"]
    with pytest.raises(RuntimeError, match="install torch, scikit-learn and safetensors for it by hand"):
        deps.qgis_python(platform, executable, prefix, (3, 11), is_file=lambda p: False)


def _fake_pip(script: str) -> list[str]:
    """A command that acts like pip writing into the staging prefix given after it."""
    return [sys.executable, "-c", script]


def test_nothing_is_half_installed(monkeypatch, tmp_path) -> None:
    """pip writes into a staging copy; a failure leaves the installed folder as it was, a success
    replaces it whole."""
    monkeypatch.setattr(deps, "deps_dir", lambda: tmp_path)
    plan = deps.install_plan(["sklearn"], python=sys.executable, driver=None)
    site = "lib/python3.11/site-packages"
    (plan.prefix / site / "old_pkg").mkdir(parents=True)  # installed earlier
    write = f"import pathlib; p = pathlib.Path({str(plan.staging)!r}) / {site!r} / 'new_pkg'; p.mkdir(parents=True)"
    plan.commands = [_fake_pip(write), _fake_pip("import sys; print('no matching distribution'); sys.exit(1)")]
    task = deps.InstallTask(plan)
    assert task.run() is False and "pip failed (exit 1), nothing was changed" in task.error
    assert "no matching distribution" in task.error  # the log's end is in the message
    assert sorted(p.name for p in (plan.prefix / site).iterdir()) == ["old_pkg"] and not plan.staging.exists()
    plan.commands = plan.commands[:1]
    assert deps.InstallTask(plan).run() is True
    assert sorted(p.name for p in (plan.prefix / site).iterdir()) == ["new_pkg", "old_pkg"]
    assert not plan.staging.exists() and deps.library_dirs(plan.prefix) == [plan.prefix / site]


def test_pip_keeps_qgis_numpy(monkeypatch, tmp_path) -> None:
    """With --prefix pip sees the numpy QGIS has: asked for it (as scikit-learn does), offline, from an
    empty wheel folder, it installs nothing instead of failing or fetching a second copy."""
    monkeypatch.setattr(deps, "deps_dir", lambda: tmp_path)
    (tmp_path / "wheels").mkdir()
    plan = deps.install_plan(["sklearn"], python=sys.executable, driver=None, wheels=tmp_path / "wheels")
    (tmp_path / "constraints.txt").write_text(plan.constraints)
    command = plan.commands[0][:-1] + ["--dry-run", "--report", str(tmp_path / "report.json"), "numpy"]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PIP_CONSTRAINT=""))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "report.json").read_text())["install"] == []


@pytest.mark.parametrize(
    ("driver", "tag"), [(None, "cpu"), ((11, 4), "cpu"), ((11, 8), "cu118"), ((12, 2), "cu121"), ((13, 0), "cu128")]
)
def test_torch_build_follows_the_driver(driver, tag) -> None:
    assert deps.torch_wheel_tag(driver) == tag


def test_cuda_version_is_read_from_nvidia_smi(monkeypatch) -> None:
    monkeypatch.setattr(deps.shutil, "which", lambda name: None)
    assert deps.cuda_driver_version() is None
    monkeypatch.setattr(deps.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    class Done:
        stdout = "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |"

    monkeypatch.setattr(deps.subprocess, "run", lambda *a, **k: Done())
    assert deps.cuda_driver_version() == (12, 4)


def test_install_button_runs_the_plan_in_a_task(without_torch, monkeypatch, qgis_iface, qtbot) -> None:
    """The installer flow up to pip: a QgsTask, then a message; pip itself is replaced."""
    import mosaic

    ran = []
    monkeypatch.setattr(deps.InstallTask, "run", lambda self: ran.append(self.plan) or True)
    monkeypatch.setattr(deps, "cuda_driver_version", lambda: None)
    plugin = mosaic.classFactory(qgis_iface)
    plugin.initGui()
    try:
        qgis_iface.messageBar().clear_messages()
        task = plugin.install_dependencies(confirm=False)
        assert isinstance(task, QgsTask)
        qtbot.waitUntil(lambda: plugin.install_task is None, timeout=30_000)
        assert len(ran) == 1 and ran[0].torch_tag == "cpu"
        assert any("Restart QGIS" in m for m in qgis_iface.messageBar().get_messages(Qgis.Success))
    finally:
        plugin.unload()
        qgis_iface.messageBar().clearWidgets()
