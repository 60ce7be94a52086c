"""Sans-I/O builders and checks for the ESL command lines the robot sends, and parsers for their output.

Every uuid and argument is validated here, before it can reach the switch: FreeSWITCH splits API
arguments on spaces and unescapes backslashes (conformance 03g), so a bad value would silently
change the command rather than fail. Destinations follow the grammar of :mod:`robot.esl.dialstring`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Iterable, Mapping

from callbot.robot.esl.dialstring import DialStringError, check_dial_string  # noqa: F401 (part of this surface)

# What a call session needs; CUSTOM subclasses go last (every token after CUSTOM is a subclass).
CALL_EVENTS: tuple[str, ...] = (
    "CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER", "CHANNEL_PARK",
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE_COMPLETE",
    "PLAYBACK_START", "PLAYBACK_STOP", "MEDIA_BUG_START", "MEDIA_BUG_STOP", "DTMF", "BACKGROUND_JOB",
)
AUDIO_STREAM_SUBCLASSES: tuple[str, ...] = (
    "mod_audio_stream::json", "mod_audio_stream::connect", "mod_audio_stream::disconnect",
    "mod_audio_stream::error", "mod_audio_stream::play",
)

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_EVENT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SUBCLASS = re.compile(r"^[A-Za-z0-9_]+(::[A-Za-z0-9_]+)*$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VAR_VALUE = re.compile(r"^[^\s,{}\[\]<>|'\"\\$^]*$")
_TOKEN = re.compile(r"^[^\s'\"\\]+$")
_CAUSE = re.compile(r"^[A-Z_]+$")
_WS_URL = re.compile(r"^wss?://[A-Za-z0-9.-]+(:[0-9]+)?(/[^\s]*)?$")
MAX_METADATA_BYTES = 8192
# mod_audio_stream ec2a781 reads these into uninitialised ints when unset (wire-facts 1.2): set them always.
# DEFLATE=true means "do not offer permessage-deflate"; HEART_BEAT=0 means no pings.
STREAM_CHANNEL_VARIABLES: dict[str, str] = {"STREAM_MESSAGE_DEFLATE": "true", "STREAM_HEART_BEAT": "0"}
MIXES = ("mono", "mixed", "stereo")
RATES = ("8k", "16k")
LEGS = ("aleg", "bleg", "holdb", "both")
# Switch-side cap on an answered call's length, so a robot that dies cannot leave a call up forever.
# FreeSWITCH runs every channel variable whose name starts with execute_on_answer when the channel is
# answered (switch_channel_execute_on, a prefix match), and splits app from argument at the first
# ' ' or single ':' (switch_channel_execute_on_value): ``sched_hangup:+N`` needs no space and no
# quotes. sched_hangup's default cause is ALLOTTED_TIMEOUT (mod_dptools.c sched_hangup_function);
# a misspelt cause such as ``alloted_timeout`` would silently become NORMAL_CLEARING.
MAX_CALL_VARIABLE = "execute_on_answer_max_call"
MAX_CALL_CAUSE = "ALLOTTED_TIMEOUT"
MAX_CALL_LIMIT_S = 86400
_PROMPT_PATH = re.compile(r"^[\w./+-]+$")


def check_uuid(value: str, what: str = "call uuid") -> str:
    """Return ``value`` if it is a canonical lower-case UUID (what FreeSWITCH prints), else raise ValueError."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a lower-case UUID like 0f8fad5b-d9cb-469f-a165-70867728950e")
    return value


def _token(value: str, what: str) -> str:
    if not _TOKEN.fullmatch(value or ""):
        raise ValueError(f"{what} {value!r} must be one token with no spaces, quotes or backslashes")
    return value


def check_prompt_path(path: str) -> str:
    """Return ``path`` if ``uuid_broadcast`` would play it as a file; else ValueError naming the character.

    The switch splits the argument on spaces, runs ``app::arg`` as an application, takes ``!`` as a
    hangup cause, expands ``${…}`` (and ``${name(args)}`` runs an API command), and reads ``{…}``
    as variables; so a prompt path is letters, digits and ``_ . / + -`` only.
    """
    if isinstance(path, str) and _PROMPT_PATH.fullmatch(path):
        return path
    bad = next((ch for ch in str(path) if not _PROMPT_PATH.fullmatch(ch)), None) if path else None
    raise ValueError(f"prompt path {path!r}: " + (f"{bad!r} is refused; " if bad else "it is empty; ")
                     + "use letters, digits and _ . / + - only (the switch splits on spaces, runs app::arg, "
                       "expands ${...} and reads {...} as variables)")


def check_api_command(cmd: str) -> str:
    """Refuse an ``api`` line that is empty, has a control character (a newline would start a second
    command, a NUL would cut it), or is a ``uuid_*`` command whose uuid is not one."""
    if not cmd or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in cmd):
        raise ValueError(f"API command must be one non-empty line without control characters, got {cmd!r}")
    parts = cmd.split(" ")
    if parts[0].startswith("uuid_") and len(parts) > 1:
        check_uuid(parts[1], f"uuid in {parts[0]!r}")
    return cmd


def subscription_command(events: Iterable[str] = CALL_EVENTS,
                         subclasses: Iterable[str] = AUDIO_STREAM_SUBCLASSES) -> str:
    """``event plain <names> CUSTOM <subclasses>``: names first, since every token after CUSTOM is a subclass."""
    names = list(events)
    subs = list(subclasses)
    for name in names:
        if not _EVENT_NAME.fullmatch(name) or name in ("CUSTOM", "ALL"):
            raise ValueError(f"event name {name!r} must be an upper-case event (not CUSTOM or ALL)")
    for sub in subs:
        if not _SUBCLASS.fullmatch(sub):
            raise ValueError(f"event subclass {sub!r} must look like module::name")
    if not names and not subs:
        raise ValueError("subscribe to at least one event")
    return " ".join(["event plain", *names, *(["CUSTOM", *subs] if subs else [])])


def max_call_variables(max_call_s: float) -> dict[str, str]:
    """The channel variable that hangs the call up ``max_call_s`` after the answer, switch-side (ALLOTTED_TIMEOUT).

    sched_hangup counts whole seconds (``+N``; ``+0`` would hang up at once), so the limit is
    rounded up, and must be 1..86400 s.
    """
    if isinstance(max_call_s, bool) or not isinstance(max_call_s, (int, float)) or not (
            0 < max_call_s <= MAX_CALL_LIMIT_S):
        raise ValueError(f"max_call_s {max_call_s!r} must be a number of seconds in (0, {MAX_CALL_LIMIT_S}]")
    return {MAX_CALL_VARIABLE: f"sched_hangup:+{math.ceil(max_call_s)}"}


def originate_command(call_uuid: str, dial_string: str, variables: Mapping[str, str | int | bool] | None = None,
                      app: str = "park", stream_variables: bool = True, max_call_s: float | None = None) -> str:
    """``originate {origination_uuid=U,...}<dial> &<app>()``: for ``bgapi``, never ``api`` (it blocks the socket).

    ``dial_string`` must be one of the forms of robot.esl.dialstring (DialStringError otherwise);
    channel variables come only from ``variables``, i.e. the robot's settings. ``stream_variables``
    adds STREAM_CHANNEL_VARIABLES (``variables`` may override them). ``max_call_s`` makes the
    switch hang the call up (ALLOTTED_TIMEOUT) that long after the answer even if the robot is
    gone: ``execute_on_answer_max_call=sched_hangup:+N`` (see max_call_variables).
    """
    check_uuid(call_uuid)
    check_dial_string(dial_string)
    if not re.fullmatch(r"[a-z_]+", app):
        raise ValueError(f"originate application {app!r} must be a dialplan app name such as park")
    pairs = [("origination_uuid", call_uuid)]
    limit = max_call_variables(max_call_s) if max_call_s is not None else {}
    if variables and limit.keys() & variables.keys():
        raise ValueError(f"{MAX_CALL_VARIABLE} is set from max_call_s; do not pass it as a variable")
    merged = {**(STREAM_CHANNEL_VARIABLES if stream_variables else {}), **(variables or {}), **limit}
    for name, value in merged.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not _VAR_NAME.fullmatch(name) or not _VAR_VALUE.fullmatch(text):
            raise ValueError(f"originate variable {name}={text!r}: names are [A-Za-z0-9_], values must not "
                             "contain spaces, commas, brackets, braces, < > | $ ^, quotes or backslashes")
        if name == "origination_uuid":
            raise ValueError("origination_uuid is set from call_uuid; do not pass it as a variable")
        pairs.append((name, text))
    return "originate {" + ",".join(f"{n}={v}" for n, v in pairs) + "}" + dial_string + f" &{app}()"


def audio_stream_start_command(call_uuid: str, url: str, mix: str = "mono", rate: str = "16k",
                               metadata: Mapping[str, object] | None = None) -> str:
    """``uuid_audio_stream U start <url> <mix> <rate> [<json>]``; the metadata is compact JSON, checked to survive.

    The metadata is the last argument, so its spaces survive, but FreeSWITCH unescapes backslashes
    (``\\"`` becomes ``"``), so JSON that needs an escape is refused rather than sent broken.
    """
    check_uuid(call_uuid)
    if not _WS_URL.fullmatch(url or ""):
        raise ValueError(f"audio stream url {url!r} must be ws:// or wss://, a host of [A-Za-z0-9.-] "
                         "(no [::1] or _: mod_audio_stream refuses them), an optional numeric port, then a path")
    _token(url, "audio stream url")
    if mix not in MIXES or rate not in RATES:
        raise ValueError(f"mix {mix!r} / rate {rate!r}: use one of {MIXES} and one of {RATES}")
    line = f"uuid_audio_stream {call_uuid} start {url} {mix} {rate}"
    if metadata:
        text = json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=False)
        if "\\" in text or "\n" in text:
            raise ValueError(f"stream metadata {text!r} needs JSON escapes, which FreeSWITCH would unescape; "
                             "use plain values without quotes, backslashes or control characters")
        if len(text.encode("utf-8")) >= MAX_METADATA_BYTES:
            raise ValueError(f"stream metadata is {len(text.encode())} bytes; mod_audio_stream keeps "
                             f"{MAX_METADATA_BYTES - 1} (initialMetadata[8192])")
        line += " " + text
    return line


def audio_stream_stop_command(call_uuid: str) -> str:
    """``uuid_audio_stream U stop`` (no text: FreeSWITCH would cut it at the first space)."""
    return f"uuid_audio_stream {check_uuid(call_uuid)} stop"


def broadcast_command(call_uuid: str, path: str, leg: str = "aleg") -> str:
    """``uuid_broadcast U <path> aleg``: one file per broadcast (FreeSWITCH bug 179)."""
    check_uuid(call_uuid)
    check_prompt_path(path)
    if leg not in LEGS:
        raise ValueError(f"broadcast leg {leg!r}: use one of {LEGS}")
    return f"uuid_broadcast {call_uuid} {path} {leg}"


def break_command(call_uuid: str) -> str:
    """``uuid_break U all``: stops the playing file and flushes queued broadcasts."""
    return f"uuid_break {check_uuid(call_uuid)} all"


def pause_toggle_command(call_uuid: str) -> str:
    """``uuid_fileman U pause``: pauses the playing file, and a second one resumes it at the same sample
    (the prompt goes silent 41-52 ms later on a real switch; no event either way)."""
    return f"uuid_fileman {check_uuid(call_uuid)} pause"


def kill_command(call_uuid: str, cause: str = "NORMAL_CLEARING") -> str:
    """``uuid_kill U <cause>``: hang up the call with a cause name."""
    if not _CAUSE.fullmatch(cause):
        raise ValueError(f"hangup cause {cause!r} must be a cause name such as NORMAL_CLEARING")
    return f"uuid_kill {check_uuid(call_uuid)} {cause}"


def parse_show_channels_json(text: str) -> set[str]:
    """The uuids in ``show channels as json`` output: ``{"row_count": 0}`` or ``{"row_count": N, "rows": [...]}``."""
    try:
        obj = json.loads(text)
    except ValueError:
        raise ValueError(f"`show channels as json` did not return JSON: {text[:200]!r}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("row_count"), int):
        raise ValueError(f"`show channels as json` returned no row_count: {text[:200]!r}")
    rows = obj.get("rows", [])
    if not isinstance(rows, list) or len(rows) != obj["row_count"]:
        raise ValueError(f"`show channels as json`: row_count {obj['row_count']} does not match the rows")
    return {row["uuid"] for row in rows if isinstance(row, dict) and isinstance(row.get("uuid"), str)}
