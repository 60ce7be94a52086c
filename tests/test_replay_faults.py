"""Fault tests over real sockets (simswitch + audio server + robot): ESL drops, no audio server,
the callee hanging up mid-prompt, and a scenario with a missing file."""

from __future__ import annotations

import socket

import gevent
from click.testing import CliRunner

from callbot.app.cli import main
from callbot.config import Settings
from callbot.robot.esl.client import EslClient
from callbot.app.replay import replay

SPEED = 10.0


def _drop_on_first_playback(client: EslClient) -> None:
    """Cut the ESL connection (as a network failure would) when the first prompt starts."""
    fired = []

    def on_playback(_event: object) -> None:
        if not fired:
            fired.append(True)
            assert client.sock is not None
            client.sock.shutdown(socket.SHUT_RDWR)

    client.register_handle("PLAYBACK_START", on_playback)


def test_esl_drop_mid_call_reconnects_and_finishes_the_call():
    report = replay("silence", Settings().replace(**{"esl.reconnect_min_s": 0.1}), speed=SPEED,
                    on_client=_drop_on_first_playback)
    assert {"esl_disconnected", "esl_reconnected"} <= set(report["flags"]), report["flags"]
    assert report["hangup"] == {"by": "robot", "cause": "NORMAL_CLEARING"}
    assert report["disposition"] == "no_reply"
    assert [r["outcome"] for r in report["intents"]] == ["silence", "silence"]


def test_callee_hangs_up_during_the_esl_outage_and_the_call_is_recorded_cleanly():
    report = replay("silence", Settings().replace(**{"esl.reconnect_min_s": 0.5}), speed=SPEED,
                    dial_options={"hangup_after_s": "2"}, on_client=_drop_on_first_playback)
    assert "esl_disconnected" in report["flags"] and "ended_during_esl_outage" in report["flags"]
    assert report["hangup"]["by"] == "switch" and report["disposition"] == "incomplete"
    states = [e["state"] for e in report["events"] if e["type"] == "state"]
    assert states[-2:] == ["hangup", "done"]


def test_audio_server_unreachable_call_goes_on_without_barge_in_and_is_flagged():
    report = replay("long_reply", Settings(), speed=SPEED, audio=False)
    assert "audio_server_check_failed" in report["flags"] and "audio_unreachable" in report["flags"]
    assert report["barge_ins"] == [] and report["prompts"][0]["status"] == "done"
    errors = [e for e in report["events"] if e["type"] == "mod_audio_stream::error"]
    assert errors and '"code":6' in errors[0]["body"]
    assert report["disposition"] == "no_reply" and report["hangup"]["by"] == "robot"


def test_callee_hangs_up_in_the_middle_of_a_prompt():
    report = replay("silence", Settings(), speed=SPEED, dial_options={"hangup_after_s": "4"})
    assert report["hangup"]["by"] == "callee" and report["disposition"] == "hung_up"
    (greeting,) = report["prompts"]
    # FreeSWITCH reports `done` for a file cut by a hang-up (wire facts section 3)
    assert greeting["status"] == "done" and abs(greeting["stopped_s"] - 4.0) < 0.1
    assert "prompt_cut_by_hangup" in [e["type"] for e in report["events"]]
    assert not any(e["type"] == "state" and e["state"] == "hanging_up" for e in report["events"])


def test_scenario_with_a_missing_file_fails_at_load_before_any_call(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nlanguage = "en"\nstart = "a"\n'
                   '[steps.a]\nprompt = "nope.wav"\ndisposition = "done"\n', encoding="utf-8")
    before = {t.name for t in __import__("threading").enumerate()}
    result = CliRunner().invoke(main, ["replay", "short_yes", "--scenario", str(bad), "--speed", "20"])
    assert result.exit_code == 1
    assert "steps.a.prompt: file" in result.output and "nope.wav does not exist" in result.output
    # nothing was started: no simswitch, audio server or robot thread
    assert {t.name for t in __import__("threading").enumerate()} == before
    gevent.sleep(0)
