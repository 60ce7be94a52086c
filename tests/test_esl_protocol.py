"""The sans-I/O ESL core against the bytes a real FreeSWITCH 1.10.12 sent (shared/conformance)."""

from pathlib import Path

import pytest

from callbot.esl.protocol import (
    DISCONNECT_NOTICE,
    EslParser,
    EslProtocolError,
    frame_api_response,
    frame_command_reply,
    frame_event,
    parse_event,
    serialize_command,
    serialize_event,
    to_command,
    to_reply,
    url_decode,
    url_encode,
)

from tests.shared_paths import CONFORMANCE
CAPTURES = sorted(CONFORMANCE.glob("*.rx.bin")) if CONFORMANCE.is_dir() else []
needs_captures = pytest.mark.skipif(not CAPTURES, reason=f"no conformance captures at {CONFORMANCE}")


def _messages(path: Path):
    parser = EslParser()
    msgs = parser.feed(path.read_bytes())
    assert parser.pending == 0, f"{path.name}: trailing bytes not framed"
    return [to_reply(m) for m in msgs]


@needs_captures
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_every_captured_message_reframes_to_the_same_bytes(capture):
    """Parsing then re-serialising each message gives back exactly what FreeSWITCH sent."""
    rebuilt = bytearray()
    for reply in _messages(capture):
        ctype = reply.content_type
        if ctype == "command/reply":
            extra = [(k, v) for k, v in reply.headers.items() if k not in ("Content-Type", "Reply-Text")]
            rebuilt += frame_command_reply(reply.reply_text, extra)
        elif ctype == "api/response":
            rebuilt += frame_api_response(reply.body)
        elif ctype.startswith("text/event-"):
            fmt = ctype.rsplit("-", 1)[1]
            rebuilt += frame_event(serialize_event(parse_event(reply), fmt), fmt)
        elif ctype == "text/disconnect-notice":
            rebuilt += DISCONNECT_NOTICE
        elif ctype == "auth/request":
            rebuilt += b"Content-Type: auth/request\n\n"
        else:
            pytest.fail(f"{capture.name}: unexpected Content-Type {ctype!r}")
    assert bytes(rebuilt) == capture.read_bytes()


@needs_captures
def test_custom_event_body_is_the_servers_text_verbatim():
    events = [parse_event(r) for r in _messages(CONFORMANCE / "02_call_mono16k.rx.bin")
              if r.content_type == "text/event-plain"]
    custom = [e for e in events if e.key == "mod_audio_stream::json"]
    assert [e.body for e in custom] == ['{"type": "transcript", "text": "hello from server", "final": true}']
    assert custom[0].headers[0] == ("Event-Subclass", "mod_audio_stream::json")
    assert custom[0].unique_id == "b674cdff-5ccf-44a8-9a23-6117a9f3fc3c"
    job = next(e for e in events if e.name == "BACKGROUND_JOB")
    assert job.body == "+OK b674cdff-5ccf-44a8-9a23-6117a9f3fc3c\n"


@needs_captures
def test_client_commands_parse_as_sent():
    parser = EslParser()
    cmds = [to_command(m) for m in parser.feed((CONFORMANCE / "01_esl_basics.tx.bin").read_bytes())]
    assert [c.line for c in cmds][:3] == ["auth wrongpass", "auth ClueCon", "api status"]
    assert cmds[-1].verb == "exit"
    assert b"".join(serialize_command(c.line) for c in cmds) == (CONFORMANCE / "01_esl_basics.tx.bin").read_bytes()


def test_parser_handles_any_split_and_crlf():
    data = b"\r\n\r\napi status\r\n\r\nbgapi originate x &park()\nJob-UUID: abc\n\n"
    for cut in range(len(data)):
        parser = EslParser()
        msgs = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert [to_command(m).line for m in msgs] == ["api status", "bgapi originate x &park()"]
        assert to_command(msgs[1]).headers == {"Job-UUID": "abc"}


def test_parser_limits():
    with pytest.raises(EslProtocolError, match="Content-Length"):
        EslParser().feed(b"sendmsg x\nContent-Length: 99999999999\n\n")
    with pytest.raises(EslProtocolError, match="header block"):
        EslParser(max_header=100).feed(b"x" * 200)
    with pytest.raises(EslProtocolError, match="bad Content-Length"):
        EslParser().feed(b"api x\nContent-Length: ten\n\n")


def test_url_encoding_matches_freeswitch():
    assert url_encode("mod_audio_stream::json") == "mod_audio_stream%3A%3Ajson"
    assert url_encode("Sun, 22 Nov 2026 02:47:25 GMT") == "Sun,%2022%20Nov%202026%2002%3A47%3A25%20GMT"
    assert url_encode("fd00::2") == "fd00%3A%3A2"
    assert url_encode("100%25 sure") == "100%25%20sure"  # an existing %XX is not encoded twice
    assert url_encode("é/(x)") == "%C3%A9/(x)"
    assert url_decode(url_encode('a "b" {c}+d')) == 'a "b" {c}+d'


def test_command_injection_is_refused():
    with pytest.raises(ValueError):
        serialize_command("api status\n\napi hupall")
    with pytest.raises(ValueError):
        serialize_command("sendmsg x", [("execute-app-arg", "a\nb")])
