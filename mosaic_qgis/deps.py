"""Are MoSAiC's Python dependencies importable in QGIS's Python, and if not, install them.

The check only looks modules up (``importlib.util.find_spec``), it never imports them,
so it is cheap and loading the plugin stays free of torch. Missing packages are installed
with pip into a folder of the plugin's own in the QGIS profile (``<profile>/mosaic/python``),
which survives plugin upgrades and is appended to ``sys.path`` when the plugin loads, so
QGIS's own packages (numpy, GDAL) always win. numpy is pinned to the version QGIS ships,
so nothing installed there can pull in a numpy that QGIS's GDAL bindings cannot use.
torch comes from the PyTorch index: the CPU build, or a CUDA build when ``nvidia-smi``
reports an NVIDIA driver.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask

LOG_TAG = "MoSAiC"

# module -> pip requirement. rasterio is listed last: on Linux distributions QGIS's
# rasterio normally comes from the system package manager (sharing QGIS's GDAL).
REQUIRED: dict[str, str] = {
    "torch": "torch",
    "safetensors": "safetensors",
    "sklearn": "scikit-learn",
    "rasterio": "rasterio",
}
TORCH_INDEX = "https://download.pytorch.org/whl/{tag}"
# (minimum CUDA driver version, PyTorch wheel tag), newest first.
CUDA_WHEELS: tuple[tuple[tuple[int, int], str], ...] = (
    ((12, 8), "cu128"),
    ((12, 6), "cu126"),
    ((12, 4), "cu124"),
    ((12, 1), "cu121"),
    ((11, 8), "cu118"),
)


def ext_libs_dir() -> Path:
    """The plugin's own package folder in the QGIS profile."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "mosaic" / "python"


def add_ext_libs_to_path() -> Path:
    """Append the package folder to ``sys.path`` (after QGIS's own packages) if it exists."""
    folder = ext_libs_dir()
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))
        importlib.invalidate_caches()
    return folder


def missing_modules() -> list[str]:
    """Modules of ``REQUIRED`` that QGIS's Python cannot find (nothing is imported)."""
    missing = []
    for module in REQUIRED:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def missing_message(missing: list[str]) -> str:
    """What is missing and what to do, for the message bar and the Processing dialogs."""
    packages = ", ".join(REQUIRED.get(m, m) for m in missing)
    return (
        f"MoSAiC needs the Python package(s) {packages}, which QGIS's Python cannot import. "
        "Install them with Plugins > MoSAiC > Install Python dependencies "
        f"(into {ext_libs_dir()}), then restart QGIS."
    )


def qgis_numpy_version() -> str | None:
    """The numpy version QGIS's Python already has (not imported if absent)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return version("numpy")
    except PackageNotFoundError:
        return None


def cuda_driver_version() -> tuple[int, int] | None:
    """The CUDA version the NVIDIA driver supports, from ``nvidia-smi``; None without one."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def torch_wheel_tag(driver: tuple[int, int] | None) -> str:
    """``cpu`` without an NVIDIA driver, else the newest CUDA build the driver runs."""
    if driver is None:
        return "cpu"
    for minimum, tag in CUDA_WHEELS:
        if driver >= minimum:
            return tag
    return "cpu"


def python_executable() -> str:
    """The Python interpreter behind QGIS (inside QGIS ``sys.executable`` is often QGIS itself)."""
    exe = Path(sys.executable)
    if exe.name.lower().startswith("python") and exe.is_file():
        return str(exe)
    major, minor = sys.version_info[:2]
    candidates = [
        Path(sys.exec_prefix) / "python.exe",  # Windows (OSGeo4W, standalone installer)
        Path(sys.exec_prefix) / "bin" / f"python{major}.{minor}",  # macOS bundle, conda
        Path(sys.exec_prefix) / "bin" / "python3",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    for name in (f"python{major}.{minor}", "python3"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"could not find the Python {major}.{minor} interpreter QGIS uses")


@dataclass
class InstallPlan:
    """The pip commands that install the missing packages, and where."""

    target: Path
    commands: list[list[str]]
    constraints: str  # content of the constraints file passed to every command
    torch_tag: str

    def describe(self) -> str:
        lines = [f"Target folder: {self.target}", f"torch build: {self.torch_tag}", "Constraints:"]
        lines += [f"  {line}" for line in self.constraints.splitlines()]
        lines += ["Commands:"] + ["  " + " ".join(cmd) for cmd in self.commands]
        return "\n".join(lines)


def install_plan(
    missing: list[str], python: str | None = None, driver: tuple[int, int] | None | str = "detect"
) -> InstallPlan:
    """pip commands for ``missing``: torch from the PyTorch index, the rest from PyPI.

    Every command installs into the plugin's folder with numpy pinned to QGIS's version.
    """
    python = python or python_executable()
    target = ext_libs_dir()
    tag = torch_wheel_tag(cuda_driver_version() if driver == "detect" else driver)
    numpy = qgis_numpy_version()
    constraints = f"numpy=={numpy}\n" if numpy else "numpy<2\n"
    constraints_file = str(target.parent / "constraints.txt")
    base = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--upgrade", "--target", str(target), "--constraint", constraints_file]
    commands = []
    if "torch" in missing:
        commands.append(base + ["--index-url", TORCH_INDEX.format(tag=tag),
                                "--extra-index-url", "https://pypi.org/simple", "torch"])
    others = [REQUIRED[m] for m in missing if m != "torch" and m in REQUIRED]
    if others:
        commands.append(base + others)
    return InstallPlan(target=target, commands=commands, constraints=constraints, torch_tag=tag)


class InstallTask(QgsTask):
    """Runs an ``InstallPlan`` with pip in the background; cancel stops pip."""

    def __init__(self, plan: InstallPlan, on_done=None) -> None:
        super().__init__("Installing MoSAiC dependencies", QgsTask.CanCancel)
        self.plan = plan
        self.on_done = on_done  # callable(ok: bool, message: str), called in the main thread
        self.log_path = plan.target.parent / "install.log"
        self.error = ""

    def run(self) -> bool:
        try:
            self.plan.target.mkdir(parents=True, exist_ok=True)
            (self.plan.target.parent / "constraints.txt").write_text(self.plan.constraints)
            env = dict(os.environ, PYTHONNOUSERSITE="1")
            with open(self.log_path, "w", encoding="utf-8") as log:
                for i, command in enumerate(self.plan.commands):
                    log.write("$ " + " ".join(command) + "\n")
                    log.flush()
                    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                    while proc.poll() is None:
                        if self.isCanceled():
                            proc.terminate()
                            proc.wait(timeout=30)
                            self.error = "installation cancelled"
                            return False
                        try:
                            proc.wait(timeout=0.5)
                        except subprocess.TimeoutExpired:
                            pass
                    if proc.returncode != 0:
                        self.error = f"pip failed (exit {proc.returncode}); see {self.log_path}"
                        return False
                    self.setProgress(100.0 * (i + 1) / len(self.plan.commands))
        except Exception as e:  # noqa: BLE001 - reported in the message bar, never a traceback dialog
            self.error = f"{type(e).__name__}: {e}"
            return False
        return True

    def finished(self, result: bool) -> None:  # noqa: FBT001 (QGIS API)
        if result:
            add_ext_libs_to_path()
            message = f"MoSAiC dependencies installed into {self.plan.target}. Restart QGIS to use them."
        else:
            message = f"Installing MoSAiC dependencies failed: {self.error}"
        QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Info if result else Qgis.Critical)
        if self.on_done is not None:
            self.on_done(result, message)
