"""Replays every captured client session (shared/conformance/*.tx.bin) against simswitch and compares.

Compared: reply framing and texts (uuids and uptime digits normalised), the ordered list of the
events simswitch emulates for the originated leg, the API events' commands, the header NAMES a
robot can rely on (values that legitimately differ are not compared), the standard header order,
and event bodies. What is deliberately not emulated is listed in simswitch/CONFORMANCE.md.
"""

from __future__ import annotations

import asyncio
import collections

import pytest

from conformance_replay import CONFORMANCE, captured, captured_ws, normalise, replay, sent_api_commands

SCENARIOS = sorted(p.name[: -len(".tx.bin")] for p in CONFORMANCE.glob("*.tx.bin")) if CONFORMANCE.is_dir() else []
pytestmark = pytest.mark.skipif(not SCENARIOS, reason=f"no captures in {CONFORMANCE}")

# Events FreeSWITCH fires that simswitch does not emulate (state-machine noise, loopback B legs, timers).
NOT_EMULATED = {"CODEC", "CHANNEL_UUID", "CHANNEL_OUTGOING", "CHANNEL_STATE", "CHANNEL_ORIGINATE",
                "CHANNEL_CALLSTATE", "CALL_UPDATE", "COMMAND", "PRIVATE_COMMAND", "HEARTBEAT", "RE_SCHEDULE",
                "API"}  # API is compared separately: its place depends on thread timing
# Ringing depends on the far end: our callees always send 180; loopback legs vary (none, 180, 183).
RINGING = {"CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA"}
# Header names set by mod_loopback or the dialplan, which simswitch's endpoint does not have.
LOOPBACK_ONLY = {"variable_loopback_leg", "variable_other_loopback_leg_uuid", "variable_channel_cid_flipped",
                 "variable_pre_transfer_caller_id_number", "variable_is_loopback", "variable_DP_MATCH",
                 "variable_progress_media_stamp"}
# On legs that failed in the loopback dialplan, apps ran there (e.g. playback of local_stream://moh).
DIALPLAN_APPS = {"variable_current_application", "variable_current_application_data",
                 "variable_current_application_response", "variable_endpoint_disposition",
                 "variable_last_app", "variable_last_arg"}
STANDARD = 13  # Event-Name .. Event-Sequence


def a_leg(events, answered: set[str] | None = None):
    return [e for e in events if "callee-b" not in (e.get("Channel-Name") or "")
            and "nosuchext-b" not in (e.get("Channel-Name") or "") and "-b" != (e.get("Channel-Name") or "")[-2:]]


def per_channel(events) -> dict[str, list[str]]:
    """Each channel's emulated events in order (order across channels depends on thread timing)."""
    out: dict[str, list[str]] = collections.defaultdict(list)
    for e in events:
        if e.unique_id and e.name not in NOT_EMULATED | RINGING:
            out[e.unique_id].append(key(e))
    return dict(out)


def key(e) -> str:
    return e.key + (f"({e.get('Application')})" if "EXECUTE" in e.name else "")


@pytest.fixture(scope="module")
def results():
    return {}


@pytest.mark.parametrize("name", SCENARIOS)
def test_capture_replays_identically(name):
    ours, ws_records = asyncio.run(asyncio.wait_for(replay(name), 120))
    cap = captured(name)
    cap_ws = captured_ws(name)
    if cap_ws is not None:  # what the WebSocket server saw: handshake, texts, frame sizes, close
        (rec,) = ws_records
        assert [n for n, _ in rec.request_headers] == cap_ws["headers"]
        assert rec.texts == cap_ws["texts"]
        assert {len(m) for _, m in rec.messages if isinstance(m, bytes)} == cap_ws["sizes"]
        assert rec.close == cap_ws["close"]
    assert set(ours) == set(cap), "same connections"
    for conn in cap:
        c, o = cap[conn], ours[conn]
        assert [(t, normalise(x)) for t, x in o.replies] == [(t, normalise(x)) for t, x in c.replies]
        cap_events, our_events = a_leg(c.events), o.events
        assert per_channel(our_events) == per_channel(cap_events)
        assert [e["Job-Command"] for e in our_events if e.name == "BACKGROUND_JOB"] == [
            e["Job-Command"] for e in cap_events if e.name == "BACKGROUND_JOB"]
        for job in (e for e in our_events if e.name == "BACKGROUND_JOB" and (e.body or "").startswith("+OK ")):
            answered_before = [e for e in our_events[:our_events.index(job)] if e.name == "CHANNEL_ANSWER"]
            assert job.body.split()[1] in {e.unique_id for e in answered_before}, "ANSWER precedes the job"
        sent = sent_api_commands(name)  # the capture also shows API events of other clients of that switch
        assert ([e["API-Command"] for e in our_events if e.name == "API"]
                == [e["API-Command"] for e in c.events if e.name == "API" and e["API-Command"] in sent])
        answered = {e.unique_id for e in cap_events if e.name == "CHANNEL_ANSWER"}
        cap_names, our_names = collections.defaultdict(set), collections.defaultdict(set)
        for e in cap_events:
            names = {n for n, _ in e.headers} - LOOPBACK_ONLY
            if e.unique_id not in answered:
                names -= DIALPLAN_APPS
            cap_names[key(e)] |= names
        for e in our_events:
            our_names[key(e)] |= {n for n, _ in e.headers}
        for k in cap_names.keys() & our_names.keys():
            assert not cap_names[k] - our_names[k], f"{k}: header names missing"
        first_cap = {key(e): [n for n, _ in e.headers[:STANDARD + 1]] for e in cap_events}
        for e in our_events:
            if key(e) in first_cap:
                assert [n for n, _ in e.headers[:STANDARD + 1]] == first_cap[key(e)], key(e)
        bodies = sorted((e.key, normalise(e.body)) for e in cap_events if e.body is not None)
        assert sorted((e.key, normalise(e.body)) for e in our_events if e.body is not None) == bodies
