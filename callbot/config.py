"""The one typed settings object: code defaults, then a TOML file, then CALLBOT_* env vars, then CLI flags.

Each section is a frozen dataclass. Later issues add fields to a section (or a new section to
`Settings`); the loader below needs no change, because it is driven by the dataclass fields.
Env vars are named ``CALLBOT_<SECTION>_<FIELD>``, e.g. ``CALLBOT_ESL_PASSWORD`` or
``CALLBOT_AUDIO_SERVER_PORT``; ``CALLBOT_CONFIG`` names the TOML file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong type; the message names the source."""


@dataclass(frozen=True)
class EslSettings:
    """How the robot reaches the switch's Event Socket."""

    host: str = "127.0.0.1"
    port: int = 8021
    password: str | None = None  # no default outside simswitch: a real switch must be told
    command_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0


@dataclass(frozen=True)
class AudioServerSettings:
    """The WebSocket server that mod_audio_stream connects to."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None  # ws://host:port as the switch must dial it; default from host/port
    token: str | None = None
    max_streams: int = 200
    max_message_bytes: int = 65536
    max_text_bytes: int = 16384
    idle_timeout_s: float = 10.0
    handshake_timeout_s: float = 5.0
    send_queue_max: int = 256
    metrics_port: int | None = None
    log_json: bool = False


@dataclass(frozen=True)
class VadSettings:
    """Voice activity detection and segmenting, all in stream time."""

    frame_ms: int = 20
    aggressiveness: int = 2
    noise_margin_db: float = 9.0  # a voiced frame must be this far above the stream's noise floor
    min_level_dbfs: float = -50.0  # and above this absolute level
    noise_adapt_ms: int = 1000  # time constant of the noise-floor estimate
    start_window_ms: int = 200  # speech starts when this window is ...
    start_ratio: float = 0.6  # ... at least this voiced
    pre_speech_ms: int = 300
    hangover_ms: int = 300


@dataclass(frozen=True)
class BargeInSettings:
    """When talking over the robot counts as a barge-in."""

    min_speech_ms: int = 1500
    bridge_ms: int = 300


@dataclass(frozen=True)
class Settings:
    """Every setting of callbot, by section."""

    esl: EslSettings = field(default_factory=EslSettings)
    audio_server: AudioServerSettings = field(default_factory=AudioServerSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    bargein: BargeInSettings = field(default_factory=BargeInSettings)

    def replace(self, **sections: Any) -> "Settings":
        """A copy with whole sections or dotted keys (``{"vad.hangover_ms": 200}``) replaced."""
        return apply_overrides(self, sections, source="code")


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML, env or CLI value into the field's declared type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        return _coerce(value, args[0], where)
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return origin(_coerce(v, item, where) for v in value)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if annotation is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if annotation is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {annotation.__name__}") from None
    return value


def apply_overrides(settings: Settings, values: Mapping[str, Any], source: str) -> Settings:
    """Apply ``{"section": {...}}`` or ``{"section.field": v}`` values, checking every name and type."""
    sections = _section_types()
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if "." in key:
            sec, name = key.split(".", 1)
            nested.setdefault(sec, {})[name] = value
        elif key in sections and dataclasses.is_dataclass(value):
            nested.setdefault(key, {}).update(dataclasses.asdict(value))
        elif key in sections and isinstance(value, Mapping):
            nested.setdefault(key, {}).update(value)
        else:
            raise ConfigError(f"{source}: unknown setting {key!r}; sections are {', '.join(sections)}")
    changed = {}
    for sec, fields_ in nested.items():
        if sec not in sections:
            raise ConfigError(f"{source}: unknown section [{sec}]; sections are {', '.join(sections)}")
        cls = sections[sec]
        hints = typing.get_type_hints(cls)
        current = getattr(settings, sec)
        updates = {}
        for name, value in fields_.items():
            if name not in hints:
                known = ", ".join(f.name for f in dataclasses.fields(cls))
                raise ConfigError(f"{source}: unknown setting {sec}.{name}; [{sec}] has {known}")
            updates[name] = _coerce(value, hints[name], f"{source}: {sec}.{name}")
        changed[sec] = dataclasses.replace(current, **updates)
    return dataclasses.replace(settings, **changed)


def env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """``CALLBOT_<SECTION>_<FIELD>`` variables as dotted keys; unknown CALLBOT_* names are errors."""
    out: dict[str, str] = {}
    sections = sorted(_section_types(), key=len, reverse=True)  # audio_server before a shorter prefix
    for name, value in env.items():
        if not name.startswith("CALLBOT_") or name == "CALLBOT_CONFIG":
            continue
        rest = name[len("CALLBOT_"):].lower()
        sec = next((s for s in sections if rest.startswith(s + "_")), None)
        if sec is None:
            raise ConfigError(f"environment: {name} names no settings section")
        out[f"{sec}.{rest[len(sec) + 1:]}"] = value
    return out


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults, then the TOML file (``path`` or ``$CALLBOT_CONFIG``), then env, then ``overrides``."""
    env = os.environ if env is None else env
    settings = Settings()
    path = path or env.get("CALLBOT_CONFIG")
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        settings = apply_overrides(settings, data, source=str(p))
    settings = apply_overrides(settings, env_overrides(env), source="environment")
    if overrides:
        clean = {k: v for k, v in overrides.items() if v is not None}
        settings = apply_overrides(settings, clean, source="command line")
    return settings
