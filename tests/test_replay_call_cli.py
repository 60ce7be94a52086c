"""`callbot call DEST` against simswitch and the audio server started as separate servers (real sockets)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from callbot.app.cli import main
from callbot.config import Settings
from callbot.app.replay import FIXTURES_DIR, audio_server_thread
from callbot.robot.store import Store
from callbot.simswitch import SimSwitchThread


def test_call_prints_the_live_timeline_then_the_result_and_records_it(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'calls.db'}"
    with SimSwitchThread(speed=10, esl_port=0, password="s3cret", fixtures_dir=FIXTURES_DIR) as switch, \
            audio_server_thread(Settings()) as audio_port:
        for name, value in {"ESL_PORT": switch.esl_port, "ESL_PASSWORD": "s3cret", "AUDIO_SERVER_PORT": audio_port,
                            "ROBOT_SPEED": 10, "DB_URL": db}.items():
            monkeypatch.setenv(f"CALLBOT_{name}", str(value))
        result = CliRunner().invoke(main, ["call", "fixture/long_reply", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["barge_ins"] and doc["barge_ins"][0]["break_at_switch_s"] is not None
    assert "BARGE-IN detected" in result.stderr  # the live timeline
    stored = Store(db).attempt(doc["call_uuid"])
    assert stored is not None and stored["disposition"] == doc["disposition"]
    assert stored["destination"] == "fixture/long_reply" and len(stored["events"]) == len(doc["events"])


def test_call_with_a_wrong_password_fails_with_the_fix(monkeypatch):
    with SimSwitchThread(speed=10, esl_port=0, password="s3cret") as switch:
        monkeypatch.setenv("CALLBOT_ESL_PORT", str(switch.esl_port))
        monkeypatch.setenv("CALLBOT_ESL_PASSWORD", "wrong")
        result = CliRunner().invoke(main, ["call", "fixture/silence", "--no-db"])
    assert result.exit_code == 1
    assert "refused the password" in result.output and "CALLBOT_ESL_PASSWORD" in result.output
