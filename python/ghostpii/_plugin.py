"""Where the compiled plugin lives: the directory of this package (``_internal`` sits here)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PLUGIN_PATH"]

PLUGIN_PATH = Path(__file__).parent
