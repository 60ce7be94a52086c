"""EventRouter, the client's sans-I/O dispatch: no sockets, events in, callbacks and markers out."""

from __future__ import annotations

import uuid

import pytest

from callbot.esl.protocol import EslEvent
from callbot.robot.esl.errors import CHANNEL_GONE, ESL_DISCONNECTED, ESL_RECONNECTED, SYNTHETIC_HEADER, EslError
from callbot.robot.esl.routing import EventRouter

A, B = str(uuid.uuid4()), str(uuid.uuid4())


def ev(name: str, uid: str | None = None, subclass: str | None = None) -> EslEvent:
    headers = ([("Event-Subclass", subclass)] if subclass else []) + [("Event-Name", name)]
    return EslEvent(headers + ([("Unique-ID", uid)] if uid else []))


def test_call_first_then_key_handlers_and_star_only_for_the_rest():
    calls, keyed, star = [], [], []
    router = EventRouter({"mod_audio_stream::json": [keyed.append], "*": [star.append]}, max_routes=10)
    router.add(A, calls.append)
    router.dispatch(ev("CUSTOM", A, "mod_audio_stream::json"))  # the call and the subclass handler
    router.dispatch(ev("CHANNEL_ANSWER", A))                    # the call only
    router.dispatch(ev("CHANNEL_ANSWER", B))                    # unrouted: '*'
    assert [e.key for e in calls] == ["mod_audio_stream::json", "CHANNEL_ANSWER"]
    assert [e.key for e in keyed] == ["mod_audio_stream::json"]
    assert [e.unique_id for e in star] == [B]
    assert router.remove(A) and not router.remove(A)
    router.dispatch(ev("CHANNEL_HANGUP", A))
    assert len(calls) == 2 and star[-1].unique_id == A


def test_route_cap_and_uuid_check():
    router = EventRouter({}, max_routes=1)
    router.add(A, lambda e: None)
    router.add(A, lambda e: None)  # replacing is not a new route
    with pytest.raises(EslError, match="max_routes"):
        router.add(B, lambda e: None)
    with pytest.raises(ValueError):
        router.add("not-a-uuid", lambda e: None)


def test_markers_for_an_outage():
    router = EventRouter({}, max_routes=10)
    router.add(A, lambda e: None)
    router.add(B, lambda e: None)
    down = router.disconnect_markers("read error")
    assert [(m.name, m.unique_id, m["Reason"]) for m in down] == [(ESL_DISCONNECTED, A, "read error"),
                                                                 (ESL_DISCONNECTED, B, "read error")]
    up = {m.unique_id: m for m in router.reconcile_markers({A}, 1.25)}
    assert up[A].name == ESL_RECONNECTED and up[A]["Outage-Seconds"] == "1.250"
    assert up[B].name == CHANNEL_GONE and all(m[SYNTHETIC_HEADER] == "true" for m in up.values())
    unknown = router.reconcile_markers(None, 0.5, error="timeout")
    assert {m.name for m in unknown} == {ESL_RECONNECTED} and unknown[0]["Reconcile-Error"] == "timeout"
