"""simswitch for campaigns (DESIGN section 8): --callees, --cdr, DTMF callees, --start."""

from __future__ import annotations

import asyncio
import json
import uuid as uuidlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from callbot.app.cli import main
from callbot.simswitch import SimSwitch
from callbot.simswitch.calls.callees import DialError, parse_dial
from callbot.simswitch.calls.directory import CalleeDirectory, CalleesFileError, dialled_number
from simswitch_testkit import FIXTURES, RawEsl, named

START = "2026-03-02T08:00:00Z"
START_EPOCH = datetime(2026, 3, 2, 8, tzinfo=timezone.utc).timestamp()


def voice(path: Path, seconds: float = 3.0) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    sf.write(path, (np.sin(2 * np.pi * 300 * t) * 6000).astype(np.int16), 8000, subtype="PCM_16")
    return path


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A callees file beside its own WAV, with a bundled fixture by name, a busy and a DTMF callee."""
    (tmp_path / "voices").mkdir()
    voice(tmp_path / "voices" / "human.wav")
    path = tmp_path / "callees.csv"
    path.write_text("number,callee\n"
                    "+1 (555) 0001,fixture/voices/human.wav?answer_delay_ms=100&dtmf=9@0.5;12@1\n"
                    "+15550002,error/user_busy\n"
                    "+15550003,fixture/short_yes\n"
                    "+15550004,fixture/voices/human?answer=false\n", encoding="utf-8")
    return path


# ---- numbers and the callees file ---------------------------------------------------------------

@pytest.mark.parametrize("endpoint,number", [
    ("sofia/gateway/carrier/+15550001", "+15550001"),
    ("{a=1,b=2}[c=3]sofia/gateway/carrier/+1-555-0001@sip.example.com", "+15550001"),
    ("user/1000@default", "1000"), ("loopback/15550001/default", None),
    ("sofia/gateway/carrier/alice", None), ("fixture/call2.wav", None), ("error/user_busy", None),
])
def test_the_number_is_the_last_segment_as_plus_and_digits(endpoint, number):
    assert dialled_number(endpoint) == number


def test_callees_file_maps_numbers_to_dial_specs(book):
    d = CalleeDirectory.with_callees_file(book, FIXTURES, 200)
    spec = d.resolve("sofia/gateway/carrier/+15550001", {})
    assert spec.wav == (book.parent / "voices" / "human.wav").resolve()  # relative to the CSV's folder
    assert spec.destination == "+15550001" and spec.answer_delay_s == 0.1
    assert spec.dtmf == ((0.5, "9"), (1.0, "1"), (1.3, "2"))
    assert d.resolve("sofia/gateway/carrier/+15550002", {}).fail_cause == "USER_BUSY"
    assert d.resolve("user/+15550003", {}).wav == FIXTURES / "short_yes.wav"  # a bundled name still works
    assert d.resolve("sofia/gateway/carrier/+15550004", {}).answers is False
    for unknown in ("sofia/gateway/carrier/+15559999", "sofia/gateway/carrier/alice"):
        with pytest.raises(DialError) as exc:
            d.resolve(unknown, {})
        assert exc.value.cause == "UNALLOCATED_NUMBER"
    assert d.resolve("fixture/short_yes", {}).wav == FIXTURES / "short_yes.wav"  # own endpoints beside it


@pytest.mark.parametrize("text,message", [
    ("phone,callee\n1,error/user_busy\n", ":1: the header must name the columns number,callee"),
    ("number,callee\n+1,error/user_busy\n+ 1,error/no_answer\n", ":3: +1 is listed twice"),
    ("number,callee\nabc,error/user_busy\n", ":2: 'abc' is not a number"),
    ("number,callee\n1,fixture/nosuch.wav\n", ":2: callee 'fixture/nosuch.wav' cannot be dialled"),
    ("number,callee\n1,fixture/short_yes?dtmf=x@1\n", ":2: callee"),
    ("", ":1: the header must name"),
])
def test_a_bad_callees_file_is_refused_with_its_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalleesFileError, match=message.replace("+", r"\+").replace("(", r"\(")):
        CalleeDirectory.with_callees_file(path, FIXTURES, 200)


@pytest.mark.parametrize("value,keys", [("9@4.5", ((4.5, "9"),)), ("12@3;#@5.5", ((3.0, "1"), (3.3, "2"), (5.5, "#"))),
                                        ("*@0", ((0.0, "*"),)), ("a@1", ((1.0, "A"),))])
def test_dtmf_option(value, keys):
    assert parse_dial(f"fixture/short_yes?dtmf={value}", {}, FIXTURES, 200).dtmf == keys
    assert parse_dial("fixture/short_yes", {"sim_dtmf": value}, FIXTURES, 200).dtmf == keys


@pytest.mark.parametrize("value", ["9", "@4", "x@1", "9@-1", "9@soon"])
def test_bad_dtmf_option(value):
    with pytest.raises(DialError) as exc:
        parse_dial(f"fixture/short_yes?dtmf={value}", {}, FIXTURES, 200)
    assert exc.value.cause == "INVALID_URL"


# ---- a campaign's calls on the switch --------------------------------------------------------------

def test_campaign_calls_cdr_dtmf_and_virtual_start(book, tmp_path):
    cdr = tmp_path / "cdr.jsonl"

    async def go():
        sw = SimSwitch(speed=20, callees=book, cdr=cdr, start=START)
        await sw.start()
        c = await RawEsl.listening(sw.esl_port)
        human, up, busy, unknown = (str(uuidlib.uuid4()) for _ in range(4))
        dial = "sofia/gateway/carrier/"
        await c.command(f"bgapi originate {{origination_uuid={human}}}[leg=1]{dial}+1-555-0001@sip.example &park()")
        create = await c.wait_event(named("CHANNEL_CREATE", human))
        assert create["Caller-Destination-Number"] == "+15550001"
        assert create["Channel-Name"] == f"{dial}+1-555-0001@sip.example"
        assert 0 <= int(create["Event-Date-Timestamp"]) / 1e6 - START_EPOCH < 5  # the virtual epoch starts at --start
        digits = [await c.wait_event(named("DTMF", human)) for _ in range(3)]
        assert [(e["DTMF-Digit"], e["DTMF-Duration"], e["DTMF-Source"]) for e in digits] == [
            ("9", "2000", "RTP"), ("1", "2000", "RTP"), ("2", "2000", "RTP")]
        names = [n for n, _ in digits[0].headers]
        assert names[-3:] == ["DTMF-Digit", "DTMF-Duration", "DTMF-Source"]
        assert names[:13] == [n for n, _ in create.headers[:13]]  # the standard headers first
        assert not any(n.startswith("variable_") for n in names)  # DTMF carries no channel variables
        assert [e["t"] for e in sw.truth(human).of_kind("dtmf")] == [0.5, 1.0, 1.3]
        assert await c.api(f"uuid_kill {human}") == "+OK\n"
        await c.wait_event(named("CHANNEL_DESTROY", human))
        for uuid, number, body in ((busy, "+15550002", "-ERR USER_BUSY\n"), (unknown, "+15559999", "-ERR UNALLOCATED_NUMBER\n")):
            await c.command(f"bgapi originate {{origination_uuid={uuid}}}{dial}{number} &park()")
            job = await c.wait_event(lambda e, u=uuid: e.name == "BACKGROUND_JOB" and u in e.get("Job-Command-Arg", ""))
            assert job.body == body
        await c.command(f"bgapi originate {{origination_uuid={up}}}{dial}+15550003 &park()")
        await c.wait_event(named("CHANNEL_ANSWER", up))
        await c.close()
        await sw.stop()  # the call still up gets its line now
        return human, up, busy, unknown

    human, up, busy, unknown = asyncio.run(asyncio.wait_for(go(), 60))
    lines = [json.loads(x) for x in cdr.read_text().splitlines()]
    assert all(list(line) == ["uuid", "dial_string", "number", "received_at", "answered", "hangup_cause",
                              "ended_at"] for line in lines)
    by_uuid = {line["uuid"]: line for line in lines}
    assert [line["uuid"] for line in lines] == [human, busy, unknown, up]  # in the order the calls ended
    h = by_uuid[human]
    assert h["dial_string"] == "{origination_uuid=%s}[leg=1]sofia/gateway/carrier/+1-555-0001@sip.example" % human
    assert h["number"] == "+15550001" and h["answered"] is True and h["hangup_cause"] == "NORMAL_CLEARING"
    assert START_EPOCH <= h["received_at"] < h["ended_at"] < START_EPOCH + 60
    for uuid, cause in ((busy, "USER_BUSY"), (unknown, "UNALLOCATED_NUMBER")):
        line = by_uuid[uuid]
        assert line["answered"] is False and line["hangup_cause"] == cause and line["ended_at"] == line["received_at"]
    assert by_uuid[unknown]["number"] == "+15559999"
    assert by_uuid[up]["answered"] is True and by_uuid[up]["hangup_cause"] is None and by_uuid[up]["ended_at"] is None


def test_a_terminator_digit_breaks_the_prompt(tmp_path):
    """mod_dptools' playback stops on a digit of ``playback_terminators`` (``*`` by default)."""
    prompt = voice(tmp_path / "prompt.wav", 5.0)

    async def go():
        async with SimSwitch(speed=20) as sw:
            c = await RawEsl.listening(sw.esl_port)
            uuid = await c.call("fixture/long_reply?dtmf=9@1;*@2")
            await c.api(f"uuid_broadcast {uuid} {prompt}")
            stop = await c.wait_event(named("PLAYBACK_STOP", uuid))
            assert stop["Playback-Status"] == "break" and stop["variable_playback_terminator_used"] == "*"
            (p,) = sw.truth(uuid).prompts()
            assert p["stopped_s"] == 2.0  # 9 did not stop it; * did, on the tick it arrived
            await c.close()
    asyncio.run(asyncio.wait_for(go(), 60))


def test_cli_refuses_a_bad_callees_file_and_start(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("number,callee\n1,fixture/nosuch.wav\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["simswitch", "--esl-port", "0", "--callees", str(bad)])
    assert result.exit_code == 2 and "bad.csv:2:" in result.output
    result = CliRunner().invoke(main, ["simswitch", "--esl-port", "0", "--start", "next monday"])
    assert result.exit_code == 2 and "not an ISO-8601 instant" in result.output


def test_a_runner_reads_the_virtual_clock_with_strftime():
    """``api strftime %s`` (mod_dptools) answers the switch's time: a campaign runner syncs to it."""
    async def go():
        async with SimSwitch(speed=100, start=START) as sw:
            c = await RawEsl.connect(sw.esl_port)
            first = int(await c.api("strftime %s"))
            await asyncio.sleep(0.05)  # 5 s of virtual time
            assert START_EPOCH <= first < int(await c.api("strftime %s")) <= START_EPOCH + 60
            assert await c.api("strftime 0|%%Y") == "1970"  # upstream skips the character after '|'
            await c.close()
    asyncio.run(asyncio.wait_for(go(), 30))
