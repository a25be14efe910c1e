"""Are MoSAiC's Python dependencies importable in QGIS's Python, and if not, install them.

The check only looks modules up (``importlib.util.find_spec``), it never imports them,
so it is cheap and loading the plugin stays free of torch. Missing packages are installed
by QGIS's own interpreter (``qgis_python``: never a python found on PATH) with
``pip install --prefix`` into a folder of the plugin's own in the QGIS profile
(``<profile>/mosaic/prefix``), whose site-packages are appended to ``sys.path`` when the
plugin loads, so QGIS's own packages (numpy, GDAL) always win. ``--prefix`` (unlike
``--target``) lets pip see what QGIS's Python has: numpy (pinned to QGIS's version) and
scipy are used, never downloaded again or shadowed. pip writes into a staging folder that
replaces the old one only when every command succeeded: nothing is ever half-installed.
A wheel folder the user picks makes it work offline (``--no-index --find-links``); else
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
from pathlib import Path, PurePosixPath, PureWindowsPath

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


def deps_dir() -> Path:
    """The plugin's own folder in the QGIS profile (its installed packages, their log)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "mosaic"


def prefix_dir() -> Path:
    """Where ``pip install --prefix`` puts the packages (site-packages below it)."""
    return deps_dir() / "prefix"


def library_dirs(prefix: Path) -> list[Path]:
    """The site-packages folders under a pip ``--prefix`` (layouts differ: lib/python3.X/site-packages,
    Debian's local/lib/python3.X/dist-packages, Windows' Lib/site-packages)."""
    patterns = ("lib/python*/site-packages", "lib/python*/dist-packages", "local/lib/python*/dist-packages",
                "Lib/site-packages")
    return sorted({p for pattern in patterns for p in prefix.glob(pattern) if p.is_dir()})


def add_ext_libs_to_path() -> list[Path]:
    """Append the installed packages' folders to ``sys.path`` (after QGIS's own packages); the
    folder of earlier versions of the plugin (``--target`` installs) too."""
    folders = library_dirs(prefix_dir()) + [p for p in (deps_dir() / "python",) if p.is_dir()]
    for folder in folders:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    importlib.invalidate_caches()
    return folders


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
        f"(into {prefix_dir()}), then restart QGIS."
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


def qgis_python(platform: str = sys.platform, executable: str = sys.executable, exec_prefix: str = sys.exec_prefix,
                version: tuple[int, int] = tuple(sys.version_info[:2]), is_file=os.path.isfile) -> str:
    """The interpreter QGIS runs (inside QGIS ``sys.executable`` is often QGIS itself): the
    executable when it is a python, else the one in QGIS's Python prefix. Never a python found
    on PATH: a pyenv shim or another Python would get the packages and QGIS would not see them.

    Linux: /usr/bin/qgis, prefix /usr -> /usr/bin/python3.X; macOS: QGIS.app/Contents/MacOS/QGIS,
    prefix Contents/MacOS -> Contents/MacOS/bin/python3.X; Windows (OSGeo4W, standalone):
    bin/qgis-bin.exe, prefix apps/Python3XX -> apps/Python3XX/python.exe."""
    windows = platform.startswith("win")
    path = PureWindowsPath if windows else PurePosixPath
    exe = path(executable) if executable else None
    if exe is not None and exe.name.lower().startswith("python") and is_file(str(exe)):
        return str(exe)
    prefix = path(exec_prefix)
    major, minor = version
    candidates = ([prefix / "python.exe", prefix / "python3.exe"] if windows else
                  [prefix / "bin" / f"python{major}.{minor}", prefix / "bin" / "python3"])
    for candidate in candidates:
        if is_file(str(candidate)):
            return str(candidate)
    raise RuntimeError(f"could not find the Python {major}.{minor} interpreter QGIS runs (looked for "
                       f"{', '.join(str(c) for c in candidates)}): install torch, scikit-learn and safetensors "
                       f"for it by hand (see the README)")


@dataclass
class InstallPlan:
    """The pip commands that install the missing packages, and where."""

    python: str
    prefix: Path        # the packages' folder once installed
    staging: Path       # where pip writes; replaces ``prefix`` only when every command succeeded
    commands: list[list[str]]
    constraints: str  # content of the constraints file passed to every command
    torch_tag: str
    wheels: Path | None = None  # offline: the only place packages come from

    def describe(self) -> str:
        source = f"the wheel folder {self.wheels} (offline)" if self.wheels else "PyPI and the PyTorch index"
        lines = [f"Python: {self.python}", f"Target folder: {self.prefix}", f"From: {source}",
                 f"torch build: {self.torch_tag}", "Constraints:"]
        lines += [f"  {line}" for line in self.constraints.splitlines()]
        lines += ["Commands:"] + ["  " + " ".join(cmd) for cmd in self.commands]
        return "\n".join(lines)


def install_plan(
    missing: list[str], python: str | None = None, driver: tuple[int, int] | None | str = "detect",
    wheels: Path | None = None,
) -> InstallPlan:
    """pip commands for ``missing``: from ``wheels`` only when given (offline), else torch from
    the PyTorch index and the rest from PyPI. Every command installs with ``--prefix`` into the
    staging folder, numpy pinned to QGIS's version (which pip sees installed: never fetched)."""
    python = python or qgis_python()
    prefix = prefix_dir()
    staging = prefix.with_name("prefix.partial")
    tag = torch_wheel_tag(cuda_driver_version() if driver == "detect" else driver)
    numpy = qgis_numpy_version()
    constraints = f"numpy=={numpy}\n" if numpy else "numpy<2\n"
    constraints_file = str(deps_dir() / "constraints.txt")
    base = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--prefix", str(staging), "--constraint", constraints_file]
    if wheels is not None:
        base += ["--no-index", "--find-links", str(wheels)]
    commands = []
    if "torch" in missing:
        index = [] if wheels is not None else ["--index-url", TORCH_INDEX.format(tag=tag),
                                               "--extra-index-url", "https://pypi.org/simple"]
        commands.append(base + index + ["torch"])
    others = [REQUIRED[m] for m in missing if m != "torch" and m in REQUIRED]
    if others:
        commands.append(base + others)
    return InstallPlan(python, prefix, staging, commands, constraints, tag, wheels)


class InstallTask(QgsTask):
    """Runs an ``InstallPlan`` with pip in the background; cancel stops pip."""

    def __init__(self, plan: InstallPlan, on_done=None) -> None:
        super().__init__("Installing MoSAiC dependencies", QgsTask.CanCancel)
        self.plan = plan
        self.on_done = on_done  # callable(ok: bool, message: str), called in the main thread
        self.log_path = plan.prefix.parent / "install.log"
        self.error = ""

    def run(self) -> bool:
        """pip into the staging folder (a copy of what was installed before), then swapped in;
        any failure or cancel deletes the staging folder and leaves the installed one as it was."""
        plan = self.plan
        try:
            shutil.rmtree(plan.staging, ignore_errors=True)
            if plan.prefix.is_dir():
                shutil.copytree(plan.prefix, plan.staging, symlinks=True)
            plan.staging.mkdir(parents=True, exist_ok=True)
            (plan.prefix.parent / "constraints.txt").write_text(plan.constraints)
            # pip sees the packages installed before as installed: only what is missing is fetched
            env = dict(os.environ, PYTHONNOUSERSITE="1",
                       PYTHONPATH=os.pathsep.join(str(d) for d in library_dirs(plan.staging)))
            with open(self.log_path, "w", encoding="utf-8") as log:
                for i, command in enumerate(plan.commands):
                    log.write("$ " + " ".join(command) + "\n")
                    log.flush()
                    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                    while proc.poll() is None:
                        if self.isCanceled():
                            proc.terminate()
                            proc.wait(timeout=30)
                            self.error = "installation cancelled: nothing was changed"
                            return self._discard()
                        try:
                            proc.wait(timeout=0.5)
                        except subprocess.TimeoutExpired:
                            pass
                    if proc.returncode != 0:
                        self.error = f"pip failed (exit {proc.returncode}), nothing was changed:\n{self.log_tail()}"
                        return self._discard()
                    self.setProgress(100.0 * (i + 1) / len(plan.commands))
            old = plan.prefix.with_name("prefix.old")
            shutil.rmtree(old, ignore_errors=True)
            if plan.prefix.exists():
                os.replace(plan.prefix, old)
            os.replace(plan.staging, plan.prefix)
            shutil.rmtree(old, ignore_errors=True)
        except Exception as e:  # noqa: BLE001 - reported in the message bar, never a traceback dialog
            self.error = f"{type(e).__name__}: {e}"
            return self._discard()
        return True

    def _discard(self) -> bool:
        shutil.rmtree(self.plan.staging, ignore_errors=True)
        return False

    def log_tail(self, lines: int = 12) -> str:
        """The end of pip's log, for the message bar (the whole log is in ``log_path``)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:]) + f"\n(whole log: {self.log_path})"

    def finished(self, result: bool) -> None:  # noqa: FBT001 (QGIS API)
        if result:
            add_ext_libs_to_path()
            message = (f"MoSAiC dependencies installed into {self.plan.prefix} (log: {self.log_path}). "
                       f"Restart QGIS to use them.")
        else:
            message = f"Installing MoSAiC dependencies failed: {self.error}"
        QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Info if result else Qgis.Critical)
        if self.on_done is not None:
            self.on_done(result, message)
