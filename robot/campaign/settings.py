"""A campaign's rules: the ``[campaign]`` section of the one settings object (callbot.config), with the campaign's own
overrides over it (``campaign create --settings FILE.toml``, stored with the campaign), then ``campaign run`` flags.
Every layer is checked by callbot.config (types and LIMITS), so an error names the key and where it came from.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from callbot.config import CampaignSettings, ConfigError, Settings, apply_overrides, read_toml


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """The ``[campaign]`` table of a campaign's settings file, checked now (not at run time); returns the overrides."""
    data = read_toml(path, "settings file")
    extra = sorted(set(data) - {"campaign"})
    if extra:
        raise ConfigError(f"{path}: only a [campaign] table belongs in a campaign settings file; found {extra}")
    table = data.get("campaign", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: campaign must be a table ([campaign])")
    effective(Settings(), table, str(path))
    return table


def effective(settings: Settings, overrides: Mapping[str, Any] | None, where: str = "campaign settings") -> CampaignSettings:
    """``settings.campaign`` with ``overrides`` (``{"max_attempts": 2, ...}``) over it; ConfigError naming ``where``."""
    return apply_overrides(settings, {"campaign": dict(overrides or {})}, where).campaign


def as_plain(s: CampaignSettings) -> dict[str, Any]:
    """For JSON output."""
    out = dataclasses.asdict(s)
    out["windows"] = list(s.windows)
    out["retry_after"] = dict(s.retry_after)
    return out
