"""Cost of the sans-I/O ESL parser (EslParser + parse_event), printed as one JSON document.

Run: ``.venv/bin/python tests/bench_esl_parser.py [--feeds 65536]``. Not collected by pytest
(the linear-time check in tests/test_esl_fuzz.py asserts a bound on the same one-byte case).

Cases:
- ``header_block_1byte``: one message whose header block is ``--feeds`` bytes (under the header
  cap), fed one byte at a time: the case that was quadratic (issue 11: 2.8 s).
- ``events_1byte``: ``--feeds`` bytes of plain events with bodies, one byte at a time, each event decoded.
- ``events_bulk``: 8 MiB of the same events in 64 KiB reads, each event decoded: throughput.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

from callbot.esl.protocol import EslEvent, EslParser, frame_event, parse_event, serialize_event, to_reply


def header_block(size: int) -> bytes:
    """``Content-Type: command/reply`` plus filler header lines, ``size`` bytes in all with the blank line."""
    head = b"Content-Type: command/reply\nReply-Text: +OK\n"
    lines = []
    total = len(head) + 1
    n = 0
    while total + 40 < size:
        line = b"X-Filler-%06d: %s\n" % (n, b"v" * 20)
        lines.append(line)
        total += len(line)
        n += 1
    pad = size - total - len(b"X-Pad: \n")
    return head + b"".join(lines) + b"X-Pad: " + b"p" * max(pad, 0) + b"\n\n"


def event_stream(size: int) -> bytes:
    """Plain CUSTOM events as FreeSWITCH frames them, repeated to at least ``size`` bytes."""
    headers = [("Event-Name", "CUSTOM"), ("Event-Subclass", "mod_audio_stream::json"),
               ("Unique-ID", "b674cdff-5ccf-44a8-9a23-6117a9f3fc3c"), ("Event-Date-GMT", "Wed, 28 Jan 2026 17:34:58 GMT"),
               ("variable_sip_from_display", "Café 1"), ("Channel-Name", "loopback/callee-a")]
    one = frame_event(serialize_event(EslEvent(headers, '{"v":1,"type":"barge_in","t":1.52}')))
    return one * (size // len(one) + 1)


def run(data: bytes, chunk: int, decode: bool) -> dict[str, object]:
    parser = EslParser()
    messages = 0
    start = time.perf_counter()
    for i in range(0, len(data), chunk):
        for raw in parser.feed(data[i:i + chunk]):
            messages += 1
            if decode:
                parse_event(to_reply(raw))
    seconds = time.perf_counter() - start
    return {"bytes": len(data), "feeds": -(-len(data) // chunk), "messages": messages, "seconds": round(seconds, 4),
            "mb_per_s": round(len(data) / seconds / 1e6, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=65536, help="bytes fed one at a time in the 1-byte cases")
    args = ap.parse_args(argv)
    block = header_block(min(args.feeds, 65536 - 8))
    out = {
        "python": platform.python_version(),
        "header_block_1byte": run(block, 1, decode=False),
        "events_1byte": run(event_stream(args.feeds)[:args.feeds], 1, decode=True),
        "events_bulk": run(event_stream(8 << 20), 65536, decode=True),
    }
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
