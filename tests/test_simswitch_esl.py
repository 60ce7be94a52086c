"""simswitch's Event Socket over real TCP: exact bytes with a raw socket, and greenswitch (gevent) as a client."""

from __future__ import annotations

import asyncio
import json

import gevent
import greenswitch
import pytest

from callbot.esl.protocol import AUTH_REQUEST, DISCONNECT_NOTICE, parse_event, to_reply
from callbot.simswitch import SimSwitch, SimSwitchThread
from simswitch_testkit import RawEsl, named

BOGUS = "00000000-0000-0000-0000-000000000000"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def read_until_eof(reader: asyncio.StreamReader) -> bytes:
    out = b""
    while chunk := await reader.read(65536):
        out += chunk
    return out


def test_greeting_wrong_password_and_disconnect_notice_bytes():
    async def go():
        async with SimSwitch() as sw:
            reader, writer = await asyncio.open_connection("127.0.0.1", sw.esl_port)
            assert await reader.readexactly(len(AUTH_REQUEST)) == b"Content-Type: auth/request\n\n"
            writer.write(b"auth nope\n\n")
            rest = await asyncio.wait_for(read_until_eof(reader), 5)
            assert rest == b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n" + DISCONNECT_NOTICE
            assert len(DISCONNECT_NOTICE.split(b"\n\n", 1)[1]) == 67
    run(go())


def test_api_and_bgapi_reply_bytes_and_exit():
    async def go():
        async with SimSwitch() as sw:
            c = await RawEsl.connect(sw.esl_port)
            start = len(c.raw)
            c.send(f"api uuid_exists {BOGUS}")
            await c.next_message()
            assert bytes(c.raw[start:]) == b"Content-Type: api/response\nContent-Length: 5\n\nfalse"
            for line, body in [(f"uuid_break {BOGUS}", "-ERR No such channel!\n"),
                               (f"uuid_broadcast {BOGUS} /x.wav aleg", "-ERR invalid uuid\n"),
                               (f"uuid_kill {BOGUS}", "-ERR No such channel!\n"),
                               (f"uuid_getvar {BOGUS} foo", "-ERR No such channel!\n"),
                               (f"uuid_audio_stream {BOGUS} start ws://127.0.0.1:1/x mono 16k {{}}",
                                "-ERR Operation Failed\n"),
                               ("nosuchcommand", "-ERR nosuchcommand Command not found!\n"),
                               ("module_exists mod_audio_stream", "true"),
                               ("show channels", "\n0 total.\n"), ("show channels as json", '{"row_count": 0}\n'),
                               ("hupall", "+OK hangup all channels with cause MANAGER_REQUEST\n")]:
                assert await c.api(line) == body, line
            assert (await c.api("uuid_audio_stream")).startswith("-USAGE: <uuid> [start | stop | send_text")
            status = await c.api("status")
            assert status.startswith("UP 0 years, 0 days, 0 hours, 0 minutes, ")
            assert "FreeSWITCH (Version 1.10.12-release  64bit) is ready\n" in status
            assert (await c.command("nosuchcommand")).reply_text == "-ERR command not found"
            assert (await c.command("event plain ALL")).reply_text == "+OK event listener enabled plain"
            start = len(c.raw)
            c.send("bgapi status")
            reply = to_reply(await c.next_message())
            job = reply.headers["Job-UUID"]
            assert bytes(c.raw[start:]).startswith(
                f"Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n".encode())
            api_ev = await c.wait_event(named("API"))
            assert api_ev["API-Command"] == "status"
            done = await c.wait_event(named("BACKGROUND_JOB"))
            assert done["Job-UUID"] == job and done["Job-Command"] == "status" and done.get("Job-Owner-UUID") is None
            assert done.body.startswith("UP 0 years")
            assert [n for n, _ in done.headers[:13]][::12] == ["Event-Name", "Event-Sequence"]
            assert int(api_ev["Event-Sequence"]) < int(done["Event-Sequence"])
            # event framing: Content-Length first, plain headers URL-encoded, raw body with inner length
            raw = bytes(c.raw)
            i = raw.rfind(b"Content-Length: ", 0, raw.rfind(b"Event-Name: BACKGROUND_JOB"))
            assert raw[i:].startswith(b"Content-Length: ") and b"\nContent-Type: text/event-plain\n\n" in raw[i:i + 60]
            assert b"Event-Date-GMT: " in raw and b"%20" in raw[raw.find(b"Event-Date-GMT: "):][:40]
            start = len(c.raw)
            c.send("exit")
            rest = await asyncio.wait_for(read_until_eof(c.reader), 5)
            assert bytes(c.raw[start:]) + rest == b"Content-Type: command/reply\nReply-Text: +OK bye\n\n" + DISCONNECT_NOTICE
    run(go())


def test_event_json_and_filters_and_job_uuid_header():
    async def go():
        async with SimSwitch() as sw:
            c = await RawEsl.connect(sw.esl_port)
            assert (await c.command("event json BACKGROUND_JOB")).reply_text == "+OK event listener enabled json"
            assert (await c.command(f"filter Unique-ID {BOGUS}")).reply_text == f"+OK filter added. [Unique-ID]=[{BOGUS}]"
            c.writer.write(b"bgapi version\nJob-UUID: my-job-1\n\n")
            assert (await c.next_reply()).headers["Job-UUID"] == "my-job-1"
            with pytest.raises(TimeoutError):  # dropped: BACKGROUND_JOB lacks Unique-ID
                await c.wait_event(named("BACKGROUND_JOB"), timeout=0.3)
            await c.command("filter Job-UUID my-job-2")
            c.writer.write(b"bgapi version\nJob-UUID: my-job-2\n\n")
            await c.next_reply()
            msg = to_reply(await c.next_message())
            assert msg.content_type == "text/event-json"
            obj = json.loads(msg.body)
            assert obj["Job-UUID"] == "my-job-2" and obj["_body"] == "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n"
            assert (await c.command("noevents")).reply_text == "+OK no longer listening for events"
            assert (await c.command("myevents " + BOGUS)).reply_text == "+OK Events Enabled"
            assert (await c.command("myevents " + BOGUS)).reply_text == "-ERR aready enabled."
    run(go())


def test_api_blocks_events_on_its_own_connection():
    """While a slow ``api originate`` runs, that socket gets no events; another socket does."""
    async def go():
        async with SimSwitch(speed=10) as sw:
            blocked, free = await RawEsl.connect(sw.esl_port), await RawEsl.connect(sw.esl_port)
            for c in (blocked, free):
                await c.command("event plain CHANNEL_CREATE CHANNEL_ANSWER")
            uuid = "aaaaaaaa-0000-0000-0000-000000000001"
            blocked.send(f"api originate {{origination_uuid={uuid},sim_answer_delay_ms=2000}}fixture/short_yes &park()")
            await free.wait_event(named("CHANNEL_CREATE", uuid))  # free listener sees it at once
            first = to_reply(await blocked.next_message(timeout=10))
            assert first.content_type == "api/response" and first.text == f"+OK {uuid}\n"
            later = [parse_event(to_reply(await blocked.next_message())) for _ in range(2)]
            assert [e.name for e in later] == ["CHANNEL_CREATE", "CHANNEL_ANSWER"]
    run(go())


def test_greenswitch_drives_simswitch():
    """greenswitch (gevent, in this thread) against simswitch in its own loop thread."""
    with SimSwitchThread(speed=20) as sim:
        bad = greenswitch.InboundESL("127.0.0.1", sim.esl_port, "wrong")
        with pytest.raises(ValueError, match="Invalid password"):
            bad.connect()
        # greenswitch's stop() sends `exit` while it still thinks it is connected, and that send never
        # returns once the switch has closed (wire facts 5): let it read the disconnect notice first.
        with gevent.Timeout(5):
            while bad.connected:
                gevent.sleep(0.01)
        bad.stop()
        esl = greenswitch.InboundESL("127.0.0.1", sim.esl_port, "ClueCon")
        esl.connect()
        try:
            events = []
            esl.register_handle("CHANNEL_ANSWER", events.append)
            esl.register_handle("BACKGROUND_JOB", events.append)
            assert esl.send("event plain CHANNEL_ANSWER BACKGROUND_JOB").data == "+OK event listener enabled plain"
            assert esl.send(f"api uuid_exists {BOGUS}").data == "false"
            uuid = "bbbbbbbb-0000-0000-0000-000000000002"
            reply = esl.send(f"bgapi originate {{origination_uuid={uuid}}}fixture/short_yes &park()")
            assert reply.data.startswith("+OK Job-UUID: ") and reply.headers["Job-UUID"]
            with gevent.Timeout(10):
                while len(events) < 2:
                    gevent.sleep(0.01)
            names = [e.headers["Event-Name"] for e in events]
            assert names == ["CHANNEL_ANSWER", "BACKGROUND_JOB"]  # answer before the job, as captured
            assert events[0].headers["Unique-ID"] == uuid
            assert esl.send(f"api uuid_kill {uuid}").data == "+OK\n"
        finally:
            esl.stop()  # sends exit; (greenswitch hangs if exit was already sent: its pending send never resolves)
