"""FreeSWITCH's API argument splitter (``switch_separate_string`` with a blank delimiter), written once.

Used for ``uuid_audio_stream`` (6 tokens: the last one keeps the rest of the line), ``originate``
and ``uuid_broadcast``. Rules, as observed on FreeSWITCH 1.10.12 (conformance 03g):
- runs of spaces separate tokens; the last allowed token takes the rest of the line;
- a pair of single quotes groups words and the quotes are removed; a lone ``'`` stays;
- a backslash escapes the next character: ``\\n \\r \\t \\s`` are unescaped, ``\\' \\" \\\\`` and
  ``\\<space>`` lose the backslash, any other ``\\x`` is kept as is;
- leading and trailing spaces of a token are removed (unless quoted).
"""

from __future__ import annotations

_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "s": " "}


def _quote_opens(text: str, i: int, inside: bool) -> bool:
    """A quote counts only when it closes a group or has a partner later in the line."""
    return inside or "'" in text[i + 1:]


def _cleanup(token: str) -> str:
    out: list[str] = []
    end = 0  # length of `out` that ends with a non-space (or quoted) character
    inside = False
    i = 0
    token = token.lstrip(" ")
    while i < len(token):
        c = token[i]
        if c == "\\" and i + 1 < len(token):
            e = token[i + 1]
            if e in ("'", '"', " ", "\\") or e in _UNESCAPE:
                out.append(_UNESCAPE.get(e, e))
                end = len(out)
                i += 2
                continue
        if c == "'" and _quote_opens(token, i, inside):
            inside = not inside
        else:
            out.append(c)
            if c != " " or inside:
                end = len(out)
        i += 1
    return "".join(out[:end])


def split_args(text: str, max_tokens: int = 1024) -> list[str]:
    """Split an API argument string into at most ``max_tokens`` cleaned tokens."""
    raw: list[str] = []
    i, n = 0, len(text)
    while i < n and len(raw) < max_tokens:
        while i < n and text[i] == " ":
            i += 1
        if i >= n:
            break
        if len(raw) == max_tokens - 1:
            raw.append(text[i:])
            break
        start, inside = i, False
        while i < n:
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == "'" and _quote_opens(text, i, inside):
                inside = not inside
            elif c == " " and not inside:
                break
            i += 1
        raw.append(text[start:i])
    return [_cleanup(t) for t in raw]
