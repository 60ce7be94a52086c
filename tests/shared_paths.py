"""Where the shared conformance captures are: ``$CALLBOT_SHARED_DIR``, else ``shared/`` beside the clone."""

from __future__ import annotations

import os
from pathlib import Path


def _shared_dir() -> Path:
    candidates = [os.environ.get("CALLBOT_SHARED_DIR"), Path(__file__).resolve().parents[2] / "shared", "/work/shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "conformance").is_dir():
            return Path(candidate)
    return Path(__file__).resolve().parents[2] / "shared"


SHARED = _shared_dir()
CONFORMANCE = SHARED / "conformance"
