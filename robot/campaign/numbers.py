"""Phone numbers and their time zones: E.164 with the full ``phonenumbers`` package, IANA zones with ``zoneinfo``."""

from __future__ import annotations

import functools
from typing import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from phonenumbers import timezone as number_timezones

UNKNOWN_ZONE = "Etc/Unknown"


class NumberError(ValueError):
    """Not a valid phone number (the message says why)."""


def check_region(region: str | None) -> str | None:
    """An upper-case region code phonenumbers knows (``US``, ``FR``), or None; ValueError otherwise."""
    if region is None:
        return None
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"--region {region!r} is not a region code such as US, GB or FR")
    return code


def to_e164(text: str, region: str | None = None) -> str:
    """``text`` as E.164 (``+14155550123``); national numbers need ``region``. Raises NumberError."""
    raw = " ".join((text or "").split())  # a value quoted over two lines, tabs, doubled spaces
    if not raw:
        raise NumberError("empty")
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if raw.startswith("+") or region else " (a national number needs --region)"
        raise NumberError(f"{str(exc).split(') ', 1)[-1]}{hint}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise NumberError("not a valid number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def number_zones(e164: str) -> tuple[str, ...]:
    """Every IANA zone the number may be in, per phonenumbers; () when it knows none (``Etc/Unknown``)."""
    zones = number_timezones.time_zones_for_number(phonenumbers.parse(e164, None))
    return tuple(z for z in zones if z != UNKNOWN_ZONE and is_zone(z))


@functools.lru_cache(maxsize=1)
def _available() -> frozenset[str]:
    return frozenset(available_timezones())


def is_zone(name: str) -> bool:
    """An IANA zone name known to this system's zoneinfo."""
    if name not in _available():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def resolve_zones(zones: Sequence[str], default_tz: str | None) -> tuple[ZoneInfo, ...]:
    """A contact's zones (its tz, else its number's), else the campaign's ``default_tz``; () = no time zone."""
    names = list(zones) or ([default_tz] if default_tz else [])
    return tuple(_zone(n) for n in names)


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)
