"""Package names that load their module on first use (PEP 562): torch, scikit-learn and the
rest are imported only by what needs them, so the plugin and the command line start fast."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_getattr(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: public name -> the submodule (``homes``) defining it."""

    def __getattr__(name: str) -> Any:
        if name in homes:
            return getattr(importlib.import_module(f".{homes[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
