"""Files that ship inside the package (prompts, demo calls), found through importlib.resources."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def bundled_folder(package: str, *parts: str) -> Path:
    """A bundled folder as a real path: the switch and soundfile need files on disk, not a zip member."""
    node = files(package).joinpath(*parts)
    path = Path(str(node))
    if not path.is_dir():
        raise FileNotFoundError(f"bundled folder {package}/{'/'.join(parts)} is missing at {path}: reinstall callbot")
    return path


def prompts_dir() -> Path:
    """The bundled prompts, ``<language>/<rate>/<name>.wav``: the default ``[prompts] dir``."""
    return bundled_folder("callbot.prompts_audio")


def demo_calls_dir() -> Path:
    """The bundled demo call fixtures (WAV plus sidecar JSON), which ``callbot replay NAME`` finds by name."""
    return bundled_folder("callbot", "demo_calls")
