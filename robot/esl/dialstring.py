"""The dial strings the robot may originate to: a strict grammar, checked before anything reaches the switch.

A destination comes from outside (a scenario, a CSV, a command line), and FreeSWITCH's
originate reads much more than an endpoint in it: ``{…}``, ``[…]`` and ``<…>`` set channel
variables (``[api_on_answer=hupall]user/1000`` would run an API command on the switch), ``,``
rings several endpoints at once, ``|`` one after another, ``:_:`` starts an enterprise
originate, ``${…}`` is expanded, and a space ends the dial string so that the rest becomes
originate's next arguments. So a destination is one of the endpoint forms below and nothing
else; channel variables come only from the robot's own settings (``originate_command``).
"""

from __future__ import annotations

import re

MAX_DIAL_STRING = 512
ACCEPTED_FORMS = (
    "sofia/<profile>/<user>[@<host>[:<port>]]",
    "sofia/gateway/<gateway>/<number>",
    "loopback/<extension>[/<context>]",
    "user/<id>[@<domain>]",
    "fixture/<name-or-path>[?<key>=<value>[&...]] (simswitch)",
    "error/<cause>",
)

# Characters that change what originate does, with the reason, for the error message.
_MEANING = {
    "{": "channel variables ({...} per call, [...] per leg, <...> per enterprise leg) come only from the "
         "robot's settings, never from a destination",
    ",": "',' would ring several endpoints at once",
    "|": "'|' would ring endpoints one after another",
    "$": "'${...}' would be expanded by the switch (and ${name(args)} runs an API command)",
    "'": "quotes change how originate splits its arguments",
    "\\": "FreeSWITCH unescapes backslashes",
    "^": "'^^' changes the separator of a variable list",
    ";": "';' adds SIP URI parameters, which the robot does not set from a destination",
    "!": "'!' names a hangup cause or a second application",
    "%": "'%' starts an escape or a variable list",
    "#": "'#' is not a SIP user character (it must be escaped)",
}
for _c in "}[]<>":
    _MEANING[_c] = _MEANING["{"]
_MEANING['"'] = _MEANING["'"]
_MEANING["`"] = _MEANING["'"]
_SPACE_MEANING = "whitespace would end the dial string, and originate would take the rest as its next arguments"
_COLON = "':' is allowed only before the port in sofia/<profile>/<user>@<host>:<port> (':_:' starts an enterprise originate)"
_QUERY = "'?', '&' and '=' are allowed only in the options of fixture/<name>?<key>=<value>&..."
_AT = "'@' is allowed only in sofia/<profile>/<user>@<host> and user/<id>@<domain>"

_NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_USER_CHARS = _NAME_CHARS | set("+*")
_PATH_CHARS = _USER_CHARS - {"*"} | {"/"}
_CAUSE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_OPTION_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class DialStringError(ValueError):
    """A destination is not one of the accepted endpoint forms; the message names the character or part."""


def _refuse(dial: str, why: str) -> DialStringError:
    shown = dial if len(dial) <= 120 else dial[:117] + "..."
    return DialStringError(f"dial string {shown!r}: {why}. Accepted forms: {', '.join(ACCEPTED_FORMS)}")


def _char_reason(ch: str) -> str:
    if ch.isspace() or not ch.isprintable():
        return _SPACE_MEANING if ch.isspace() else "control characters are not allowed"
    if ch in _MEANING:
        return _MEANING[ch]
    if ch == ":":
        return _COLON
    if ch in "?&=":
        return _QUERY
    if ch == "@":
        return _AT
    if not ch.isascii():
        return "dial strings are ASCII"
    return "it is not allowed in this part of the dial string"


def _part(dial: str, value: str, what: str, allowed: set[str], offset: int) -> str:
    """One part of an endpoint: non-empty, every character from ``allowed``."""
    if not value:
        raise _refuse(dial, f"the {what} is empty")
    for i, ch in enumerate(value):
        if ch not in allowed:
            raise _refuse(dial, f"{ch!r} at character {offset + i + 1} (in the {what}) is refused: {_char_reason(ch)}")
    return value


def _host_port(dial: str, text: str, what: str, offset: int, port_ok: bool) -> None:
    host, colon, port = text.partition(":")
    if colon and not port_ok:
        raise _refuse(dial, f"':' at character {offset + len(host) + 1} is refused: {_COLON}")
    _part(dial, host, what, _NAME_CHARS, offset)
    if not _HOST.fullmatch(host):
        raise _refuse(dial, f"the {what} {host!r} is not a host name (labels of letters, digits and '-', "
                            "joined by '.')")
    if colon:
        _part(dial, port, "port", set("0123456789"), offset + len(host) + 1)
        if not 1 <= int(port) <= 65535:
            raise _refuse(dial, f"port {port} is outside 1..65535")


def _user_at(dial: str, text: str, what: str, offset: int, port_ok: bool) -> None:
    user, at, host = text.partition("@")
    _part(dial, user, what, _USER_CHARS, offset)
    if at:
        _host_port(dial, host, "host" if port_ok else "domain", offset + len(user) + 1, port_ok)


def _segments(dial: str, rest: str, form: str, fewest: int, most: int) -> list[str]:
    """The '/'-separated parts after the endpoint, as many as ``form`` takes."""
    parts = rest.split("/")
    if not fewest <= len(parts) <= most:
        raise _refuse(dial, f"{form} takes {fewest if fewest == most else f'{fewest} or {most}'} part(s) after "
                            f"the endpoint, separated by '/'; this has {len(parts)}")
    return parts


def check_dial_string(dial: str) -> str:
    """Return ``dial`` if it is one of ACCEPTED_FORMS; else raise DialStringError naming the offending
    character (and what it would have done) or part, and the accepted forms."""
    if not isinstance(dial, str) or not dial:
        raise _refuse(str(dial), "a destination is required")
    if len(dial) > MAX_DIAL_STRING:
        raise _refuse(dial, f"it is {len(dial)} characters long, over {MAX_DIAL_STRING}")
    for i, ch in enumerate(dial):  # characters with a meaning to originate: named first, whatever the form
        if ch in _MEANING or ch.isspace() or not ch.isprintable() or not ch.isascii():
            raise _refuse(dial, f"{ch!r} at character {i + 1} is refused: {_char_reason(ch)}")
    if ":_:" in dial:
        raise _refuse(dial, f"':_:' at character {dial.index(':_:') + 1} is refused: {_COLON}")
    endpoint, slash, rest = dial.partition("/")
    start = len(endpoint) + 1
    if not slash:
        raise _refuse(dial, "it has no endpoint (such as sofia/ or user/) before a '/'")
    if endpoint == "sofia" and rest.startswith("gateway/"):
        gateway, number = _segments(dial, rest, ACCEPTED_FORMS[1], 3, 3)[1:]
        _part(dial, gateway, "gateway name", _NAME_CHARS, start + 8)
        _part(dial, number, "number", _USER_CHARS, start + 9 + len(gateway))
    elif endpoint == "sofia":
        parts = _segments(dial, rest, ACCEPTED_FORMS[0], 2, 2)
        _part(dial, parts[0], "profile", _NAME_CHARS, start)
        _user_at(dial, parts[1], "user", start + len(parts[0]) + 1, port_ok=True)
    elif endpoint == "loopback":
        parts = _segments(dial, rest, ACCEPTED_FORMS[2], 1, 2)
        _part(dial, parts[0], "extension", _USER_CHARS, start)
        if len(parts) == 2:
            _part(dial, parts[1], "context", _NAME_CHARS, start + len(parts[0]) + 1)
    elif endpoint == "user":
        _segments(dial, rest, ACCEPTED_FORMS[3], 1, 1)
        _user_at(dial, rest, "user id", start, port_ok=False)
    elif endpoint == "fixture":
        _fixture(dial, rest, start)
    elif endpoint == "error":
        _part(dial, rest, "cause", _CAUSE_CHARS, start)
    else:
        raise _refuse(dial, f"endpoint {endpoint!r} is not one the robot dials")
    return dial


def _fixture(dial: str, rest: str, start: int) -> None:
    path, question, query = rest.partition("?")
    _part(dial, path, "fixture name or path", _PATH_CHARS, start)
    if not question:
        return
    offset = start + len(path) + 1
    for option in query.split("&"):
        key, eq, value = option.partition("=")
        if not eq or not _OPTION_KEY.fullmatch(key):
            raise _refuse(dial, f"fixture option {option!r} is not <key>=<value> with a lower-case key")
        _part(dial, value, f"value of fixture option {key}", _USER_CHARS, offset + len(key) + 1)
        offset += len(option) + 1
