"""Where the plugin's bundled resources live, found relative to this package."""
from __future__ import annotations

from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parent.parent
RESOURCES = PLUGIN_ROOT / "resources"
SAMPLE_REBEN = RESOURCES / "sample" / "reben"
