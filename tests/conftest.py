"""Shared test set-up: headless Qt and the plugin importable as the package ``mosaic``.

QGIS installs the repository as the folder ``mosaic``; tests import it the same way,
whatever the checkout folder is called, through a symlink in a temporary directory.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

os.environ["QT_QPA_PLATFORM"] = "offscreen"


def _put_plugin_on_path() -> Path:
    """Create ``<tmp>/mosaic -> REPO_ROOT`` and put ``<tmp>`` first on ``sys.path``."""
    parent = Path(tempfile.mkdtemp(prefix="mosaic-plugin-path-"))
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    (parent / "mosaic").symlink_to(REPO_ROOT, target_is_directory=True)
    sys.path.insert(0, str(parent))
    return parent


PLUGIN_PARENT = _put_plugin_on_path()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root, which is the plugin folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def plugin_parent() -> Path:
    """A directory holding only ``mosaic`` (the plugin); put it on PYTHONPATH in subprocesses."""
    return PLUGIN_PARENT
