"""The ``[campaign]`` settings: dialling, pacing, retries, calling windows, leases; checked with errors that name the key.

Defaults come from code, then the global settings' ``[campaign]`` table (once callbot.config has
the section), then the campaign's own overrides (``campaign create --settings FILE.toml``, stored
with the campaign), then ``campaign run`` flags.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callbot.config import ConfigError
from callbot.robot.campaign.windows import WindowError, parse_windows

RETRY_OUTCOMES = ("busy", "no_answer", "failed", "machine", "interrupted")
MIN_RING_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class CampaignSettings:
    """How a campaign dials: every rule of DESIGN section 8, with defaults for a cautious first run."""

    dial_template: str = "sofia/gateway/carrier/{number}"  # {number} is the E.164 number with its +
    max_concurrent: int = 10  # campaign-wide: all runners together
    calls_per_second: float = 1.0  # campaign-wide
    switch_sps: float = 30.0  # the switch's own sessions-per-second (FreeSWITCH default): cps never exceeds it
    max_attempts: int = 3
    retry_after: Mapping[str, float] = field(default_factory=lambda: {
        "busy": 600.0, "no_answer": 3600.0, "failed": 1800.0, "machine": 14400.0, "interrupted": 300.0})
    windows: tuple[str, ...] = ("mon-fri 09:00-20:00", "sat 10:00-18:00")  # in the callee's local time
    default_tz: str | None = None  # IANA zone for numbers that map to none
    ring_timeout_s: float = 30.0  # originate timeout; at least 15
    abandon_after_s: float = 2.0  # first robot audio later than this after the answer: abandoned
    lease_s: float = 30.0  # a claimed contact's lease; renewed while its call lives
    opt_out_dtmf: str = "9"  # keys that opt the callee out during a call (to DNC at once); "" for none
    journal_dir: str = "callbot-journal"  # call records wait here while the database is unavailable
    stop_grace_s: float = 120.0  # on SIGTERM or pause, how long live calls may take to finish their scenario
    poll_s: float = 1.0  # how often an idle runner looks for due contacts (campaign clock seconds)
    claim_batch: int = 20  # contacts examined per claim transaction

    @property
    def cps(self) -> float:
        return min(self.calls_per_second, self.switch_sps)


def check(s: CampaignSettings, where: str) -> CampaignSettings:
    """``s`` if every value is usable, else ConfigError naming ``where`` and each bad key."""
    problems = _problems(s)
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return s


def _problems(s: CampaignSettings) -> list[str]:
    out: list[str] = []
    if "{number}" not in s.dial_template:
        out.append(f"campaign.dial_template = {s.dial_template!r}: must contain {{number}}")
    elif set(s.dial_template.replace("{number}", "")) & set(" '\"\\,{}[]|\t\n"):
        out.append(f"campaign.dial_template = {s.dial_template!r}: no spaces, quotes, backslashes, commas, "
                   "brackets or braces besides {number} (channel variables come from settings, never a template)")
    for name in ("max_concurrent", "max_attempts", "claim_batch"):
        if getattr(s, name) < 1:
            out.append(f"campaign.{name} = {getattr(s, name)}: must be at least 1")
    for name in ("calls_per_second", "switch_sps", "lease_s", "poll_s"):
        if not getattr(s, name) > 0:
            out.append(f"campaign.{name} = {getattr(s, name)}: must be greater than 0")
    for name in ("abandon_after_s", "stop_grace_s"):
        if getattr(s, name) < 0:
            out.append(f"campaign.{name} = {getattr(s, name)}: must not be negative")
    if set(s.opt_out_dtmf) - set("0123456789*#ABCD"):
        out.append(f"campaign.opt_out_dtmf = {s.opt_out_dtmf!r}: DTMF keys only (0-9, *, #, A-D), or \"\" for none")
    if s.ring_timeout_s < MIN_RING_TIMEOUT_S:
        out.append(f"campaign.ring_timeout_s = {s.ring_timeout_s}: must be at least {MIN_RING_TIMEOUT_S:g} s")
    if not isinstance(s.retry_after, Mapping):
        out.append(f"campaign.retry_after = {s.retry_after!r}: must be a table of seconds per outcome")
    else:
        for key, value in s.retry_after.items():
            if key not in RETRY_OUTCOMES:
                out.append(f"campaign.retry_after.{key}: unknown outcome; retried outcomes are "
                           f"{', '.join(RETRY_OUTCOMES)}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                out.append(f"campaign.retry_after.{key} = {value!r}: must be seconds, 0 or more")
    try:
        parse_windows(s.windows)
    except WindowError as exc:
        out.append(f"campaign.windows: {exc}")
    if s.default_tz is not None:
        try:
            ZoneInfo(s.default_tz)
        except (ZoneInfoNotFoundError, ValueError):
            out.append(f"campaign.default_tz = {s.default_tz!r}: not an IANA time zone (e.g. Europe/Paris)")
    return out


def _coerce(name: str, value: Any, annotation: Any, where: str) -> Any:
    """A TOML or flag value as the field's type; ConfigError naming ``where`` otherwise."""
    origin = typing.get_origin(annotation)
    if name == "retry_after":
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: campaign.retry_after must be a table such as {{ busy = 600 }}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        return None if value is None else _coerce(name, value, str, where)
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: campaign.{name} must be a list of strings, got {value!r}")
        return tuple(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: campaign.{name} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: campaign.{name} must be a number, got {value!r}")
        return float(value)
    if annotation is str and not isinstance(value, str):
        raise ConfigError(f"{where}: campaign.{name} must be a string, got {value!r}")
    return value


def apply_overrides(base: CampaignSettings, values: Mapping[str, Any], where: str) -> CampaignSettings:
    """``base`` with ``values`` applied; unknown keys, wrong types and bad values are errors naming ``where``."""
    hints = typing.get_type_hints(CampaignSettings)
    updates: dict[str, Any] = {}
    for name, value in values.items():
        if name not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(CampaignSettings))
            raise ConfigError(f"{where}: unknown setting campaign.{name}; [campaign] has {known}")
        updates[name] = _coerce(name, value, hints[name], where)
    if "retry_after" in updates:  # a partial table keeps the other outcomes' defaults
        updates["retry_after"] = {**base.retry_after, **updates["retry_after"]}
    return check(dataclasses.replace(base, **updates), where)


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """The ``[campaign]`` table of a TOML file, checked against CampaignSettings (returns the overrides)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"settings file {p} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"campaign"})
    if extra:
        raise ConfigError(f"{p}: only a [campaign] table belongs in a campaign settings file; found {extra}")
    table = data.get("campaign", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{p}: campaign must be a table ([campaign])")
    apply_overrides(CampaignSettings(), table, str(p))  # checks every key and value now, not at run time
    return table


def base_settings(settings: Any) -> CampaignSettings:
    """The global ``[campaign]`` section when callbot.config has one, else the code defaults."""
    section = getattr(settings, "campaign", None)
    return check(section, "[campaign]") if isinstance(section, CampaignSettings) else CampaignSettings()


def effective(settings: Any, overrides: Mapping[str, Any] | None, where: str = "campaign settings") -> CampaignSettings:
    return apply_overrides(base_settings(settings), overrides or {}, where)


def as_plain(s: CampaignSettings) -> dict[str, Any]:
    """For JSON output."""
    out = dataclasses.asdict(s)
    out["windows"] = list(s.windows)
    out["retry_after"] = dict(s.retry_after)
    return out
