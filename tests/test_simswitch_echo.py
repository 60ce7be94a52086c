"""simswitch's line-echo callee option: the robot's own playback comes back in the callee's audio, late,
quieter and phone-band, so replays exercise the audio server's echo gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from callbot.app.replay import FIXTURES_DIR, audio_server_thread, replay, replay_settings
from callbot.config import Settings
from callbot.simswitch.calls.callees import DialError, parse_dial
from callbot.simswitch.media.line_echo import LineEcho

ECHO = {"echo_db": "-12", "echo_delay_ms": "120"}
# The robot sends the greeting's start marker only once the stream is up (mod_audio_stream::connect). At
# high replay speeds the WebSocket handshake's wall time can push that past the greeting's PLAYBACK_START
# (120 ms of call time), and the greeting then has no echo reference at all; 2x keeps a wide margin.
SPEED = 2.0


def test_the_echo_options_of_a_fixture_callee() -> None:
    spec = parse_dial("fixture/long_reply?echo_db=-12&echo_delay_ms=80", {}, FIXTURES_DIR, 200)
    assert (spec.echo_db, spec.echo_delay_ms) == (-12.0, 80.0)
    spec = parse_dial("fixture/long_reply", {"sim_echo_db": "-20"}, FIXTURES_DIR, 200)
    assert (spec.echo_db, spec.echo_delay_ms) == (-20.0, 120.0)
    assert parse_dial("fixture/long_reply", {}, FIXTURES_DIR, 200).echo_db is None
    for query, problem in [("echo_db=3", "-60..0"), ("echo_db=loud", "-60..0"), ("echo_delay_ms=50", "needs echo_db"),
                           ("echo_db=-6&echo_delay_ms=5000", "0..1000")]:
        with pytest.raises(DialError, match=problem) as info:
            parse_dial(f"fixture/long_reply?{query}", {}, FIXTURES_DIR, 200)
        assert info.value.cause == "INVALID_URL"


@pytest.mark.parametrize("rate", [8000, 16000])
def test_the_echo_is_the_playback_late_quieter_and_phone_band(rate: int) -> None:
    n = rate // 50
    t = np.arange(rate) / rate  # one second written: noise, then 1 kHz, then 100 Hz
    noise = np.random.default_rng(1).standard_normal(rate) * 3000
    written = np.where(t < 0.3, noise, np.where(t < 0.6, np.sin(2 * np.pi * 1000 * t) * 8000,
                                                np.sin(2 * np.pi * 100 * t) * 8000)).astype(np.int16)
    echo = LineEcho(rate, -12.0, 120.0)
    silent = np.zeros(n, np.int16)
    out = np.concatenate([echo.add(silent, written[i:i + n]) for i in range(0, len(written), n)]
                         + [echo.add(silent, None) for _ in range(10)])
    lag = np.argmax(np.correlate(out[:rate // 2].astype(float), written[:rate // 5].astype(float), "valid"))
    assert abs(lag - round(0.120 * rate)) <= 1  # late by the delay, the filter's own delay included
    steady = out[round(0.45 * rate):round(0.7 * rate)]  # the 1 kHz part, 120 ms late
    level = 20 * np.log10(np.std(steady) / np.std(written[round(0.35 * rate):round(0.6 * rate)]))
    assert level == pytest.approx(-12.0, abs=0.5)
    low = out[round(0.8 * rate):round(1.1 * rate)]
    assert 20 * np.log10(np.std(low) / np.std(written[-rate // 4:])) < -30  # 100 Hz is outside the line's band
    callee = np.full(n, 1000, np.int16)
    assert np.array_equal(LineEcho(rate, -12.0, 120.0).add(callee, None), callee)  # nothing written: untouched


@pytest.mark.slow  # three replays through simswitch, the audio server and the robot
def test_a_replay_with_line_echo_barges_in_only_on_the_caller(tmp_path: Path) -> None:
    settings = Settings().replace(**{"stt.enabled": False})
    with audio_server_thread(replay_settings(settings)) as port:
        truths: list[dict] = []
        silent = replay("silence", settings, speed=SPEED, audio_port=port, dial_options=ECHO, on_truth=truths.append)
        talker = replay("long_reply", settings, speed=SPEED, audio_port=port, dial_options=ECHO)
    echo_entries = [e for e in truths[0]["entries"] if e["kind"] == "line_echo"]
    assert echo_entries and echo_entries[0]["level_db"] == -12.0 and echo_entries[0]["delay_ms"] == 120.0
    assert silent["barge_ins"] == []  # the echo of the greeting never barges in
    assert silent["amd"] != "machine" and silent["prompts"][0]["status"] == "done"  # nor makes AMD say machine
    (barge,) = talker["barge_ins"]
    assert abs(barge["speech_onset_s"] - 1.5) < 0.1 and abs(barge["detected_s"] - 3.0) < 0.06
    assert talker["amd"] != "machine" and barge["break_at_switch_s"] - 3.0 < 0.06
    # Control: an audio server that cannot read the robot's prompts has no echo reference, and the echo
    # alone then interrupts the robot: the echo really is in the callee's audio.
    blind = settings.replace(**{"prompts.dir": str(tmp_path)})
    with audio_server_thread(replay_settings(blind)) as port:
        unreferenced = replay("silence", settings, speed=SPEED, audio_port=port, dial_options=ECHO)
    assert unreferenced["barge_ins"], "the echo of the greeting should barge in without its reference"
    codes = [e.get("code") for e in unreferenced["events"] if e.get("type") == "error"]
    assert "prompt_not_found" in codes, unreferenced["events"]


@pytest.mark.slow
def test_a_silent_callee_on_an_echo_line_is_not_taken_for_a_machine() -> None:
    """AMD hears the line through the echo gate once its path is trusted: the robot's own greeting coming
    back 12 dB down is not a machine's greeting (it was, when AMD heard the plain [vad] gate alone)."""
    settings = Settings().replace(**{"stt.enabled": False})
    with audio_server_thread(replay_settings(settings)) as port:
        silent = replay("silence", settings, speed=SPEED, audio_port=port, dial_options=ECHO)
    assert silent["amd"] != "machine" and silent["prompts"][0]["status"] == "done"
