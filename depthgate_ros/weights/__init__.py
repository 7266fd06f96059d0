"""Model files shipped inside the package."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_NAME = "default.pt"


def bundled_checkpoint() -> Path | None:
    """The bundled default model, or None when this build ships none."""
    path = resources.files(__name__) / DEFAULT_NAME
    return Path(str(path)) if path.is_file() else None
