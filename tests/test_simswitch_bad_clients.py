"""Misbehaving ESL clients: simswitch answers as FreeSWITCH does and keeps serving everyone else."""

from __future__ import annotations

import asyncio

import pytest

from callbot.config import SimSwitchSettings
from callbot.esl.protocol import AUTH_REQUEST, DISCONNECT_NOTICE
from callbot.simswitch import SimSwitch
from simswitch_testkit import RawEsl

NOT_FOUND = b"Content-Type: command/reply\nReply-Text: -ERR command not found\n\n"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await reader.readexactly(len(AUTH_REQUEST)) == AUTH_REQUEST
    return reader, writer


async def until_eof(reader: asyncio.StreamReader) -> bytes:
    out = b""
    while chunk := await asyncio.wait_for(reader.read(65536), 5):
        out += chunk
    return out


async def still_serving(port: int) -> None:
    c = await RawEsl.connect(port)
    assert (await c.api("uuid_exists x")) == "false"
    await c.close()


async def no_connections_left(sw: SimSwitch) -> None:
    """Every half-sent or killed connection is cleaned up (polls: the server sees EOF asynchronously)."""
    for _ in range(200):
        if not sw.connections:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(sw.connections)} connection(s) still open")


def test_commands_before_auth_and_garbage_get_command_not_found():
    async def go():
        async with SimSwitch() as sw:
            reader, writer = await raw(sw.esl_port)
            writer.write(b"api status\n\n")
            assert await reader.readexactly(len(NOT_FOUND)) == NOT_FOUND
            writer.write(b"\x00\xff\xfe\x80garbage \x01\x02\r\n\r\n")
            assert await reader.readexactly(len(NOT_FOUND)) == NOT_FOUND
            writer.write(b"auth ClueCon\n\napi uuid_exists x\n\n")  # auth still accepted afterwards
            want = (b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
                    b"Content-Type: api/response\nContent-Length: 5\n\nfalse")
            assert await reader.readexactly(len(want)) == want
            await still_serving(sw.esl_port)
    run(go())


def test_huge_content_length_disconnects_that_client_only():
    async def go():
        async with SimSwitch() as sw:
            reader, writer = await raw(sw.esl_port)
            writer.write(b"auth ClueCon\n\n")
            await reader.readuntil(b"\n\n")
            writer.write(b"sendmsg x\nContent-Length: 999999999999\n\n")
            assert await until_eof(reader) == DISCONNECT_NOTICE
            await still_serving(sw.esl_port)
    run(go())


def test_disconnect_in_the_middle_of_a_command():
    async def go():
        async with SimSwitch() as sw:
            for partial in (b"auth ClueCon\n\napi uuid_exi", b"auth ClueCon\n\nsendmsg x\nContent-Length: 50\n\nabc"):
                reader, writer = await raw(sw.esl_port)
                writer.write(partial)
                await writer.drain()
                writer.close()
            await asyncio.sleep(0.05)
            await still_serving(sw.esl_port)
            await no_connections_left(sw)
    run(go())


def test_first_packet_timeout_and_connection_cap():
    async def go():
        async with SimSwitch(SimSwitchSettings(esl_port=0, first_packet_timeout_s=0.2, max_connections=2)) as sw:
            reader, _ = await raw(sw.esl_port)
            assert await until_eof(reader) == DISCONNECT_NOTICE  # nothing sent within the timeout
            a, b = await RawEsl.connect(sw.esl_port), await RawEsl.connect(sw.esl_port)
            r3, _ = await asyncio.open_connection("127.0.0.1", sw.esl_port)
            assert await until_eof(r3) == b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"
            assert await a.api("uuid_exists x") == "false" and await b.api("uuid_exists x") == "false"
    run(go())


def test_listener_killed_after_too_many_lost_events():
    """Events held back by a long ``api`` overflow the capped queue; FreeSWITCH then kills the listener."""
    async def go():
        async with SimSwitch(SimSwitchSettings(esl_port=0, speed=10, event_queue_max=2, lost_events_max=2)) as sw:
            c = await RawEsl.connect(sw.esl_port)
            await c.command("event plain ALL")
            c.send("api originate {sim_answer_delay_ms=500}fixture/short_yes &park()")
            try:
                while True:  # the api reply may or may not make it out before the close
                    await c.next_message()
            except EOFError:
                pass
            await no_connections_left(sw)
            await still_serving(sw.esl_port)
    run(go())


def test_auth_deadline_holds_for_clients_that_sent_something():
    """Issue 11: connections that each send one garbage packet must not keep every slot: whoever has not
    authenticated by the deadline is disconnected, sent packets or not; an authenticated client stays."""
    async def go():
        settings = SimSwitchSettings(esl_port=0, first_packet_timeout_s=0.4, max_connections=4)
        async with SimSwitch(settings) as sw:
            authed = await RawEsl.connect(sw.esl_port)
            squatters = []  # (reader, writer): a writer that is dropped closes its socket
            for _ in range(3):
                reader, writer = await raw(sw.esl_port)
                writer.write(b"garbage\n\n")
                assert await reader.readexactly(len(NOT_FOUND)) == NOT_FOUND
                squatters.append((reader, writer))
            full = await asyncio.open_connection("127.0.0.1", sw.esl_port)
            assert (await until_eof(full[0])).startswith(b"Content-Type: text/rude-rejection")
            for reader, _ in squatters:
                assert await until_eof(reader) == DISCONNECT_NOTICE
            await still_serving(sw.esl_port)  # the slots are free again
            assert await authed.api("uuid_exists x") == "false"  # past the deadline, and still served
    run(go())


def test_an_empty_password_is_refused_at_start():
    for password in ("", "  "):
        with pytest.raises(ValueError, match="simswitch.password"):
            SimSwitch(password=password)
