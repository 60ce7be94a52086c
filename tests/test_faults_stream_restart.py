"""Fault suite, a lost audio stream restarted, at the level of the sans-I/O call (fake clock): the timeline after it.

Found by test_faults_kills.py's audio server kill: once the robot restarts `uuid_audio_stream`,
the new stream's time starts again at 0 (a new media bug, a new MEDIA_BUG_START). Each stream now
has its own offset in the timeline, so the restarted stream's rows are dated from its own start.
The restarts go on while the call lasts, the back-off doubling up to robot.stream_restart_backoff_max_s;
after robot.stream_restarts the audio is gone and the scenario's on_audio_lost applies.
"""

from __future__ import annotations

import pytest

from callbot.config import ConfigError, Settings
from callbot.events import SpeechStarted
from callbot.robot.call.events import MediaBugStarted, StreamConnected, StreamLost
from call_harness import CallHarness


def test_fault_restarted_stream_rows_are_dated_from_its_own_start():
    h = CallHarness().start()
    h.answer_and_park()
    h.feed(MediaBugStarted(h.stamp()))
    h.play_started()
    h.advance(3.0)
    h.feed(StreamLost("mod_audio_stream::disconnect", "server closed", h.stamp()))
    h.advance(h.settings.robot.stream_restart_backoff_s + 0.5)
    assert h.whats()[-2:] == ["stream_stop", "stream_restart"]
    restarted_at = h.now
    h.feed(MediaBugStarted(h.stamp()))  # the new media bug: its stream time 0 is now
    h.feed(StreamConnected(h.stamp()))
    h.advance(0.1)
    h.audio(SpeechStarted(t=0.1))
    row = h.rows("speech_started")[-1]
    assert abs(row["t"] - (restarted_at + 0.1)) < 0.05, (row, restarted_at)


def _stream_lost_for_good(h: CallHarness) -> float:
    h.answer_and_park()
    h.play_started()
    lost_at = h.now
    h.feed(StreamLost("mod_audio_stream::disconnect", "server closed", h.stamp()))
    return lost_at


def test_fault_audio_server_gone_for_the_whole_call_is_restarted_with_capped_back_off_while_the_call_lasts():
    h = CallHarness(replies={"stream_restart": "-ERR connect failed\n"}).start()  # on_audio_lost: continue
    lost_at = _stream_lost_for_good(h)
    h.advance(40.0)
    robot = h.settings.robot
    assert h.call.sm.live
    times = [t - lost_at for t, what, _ in h.sent if what == "stream_restart"]
    gaps = [round(b - a, 6) for a, b in zip([0.0, *times], times)]
    assert gaps[:3] == [robot.stream_restart_backoff_s, robot.stream_restart_backoff_s * 2,
                        robot.stream_restart_backoff_max_s]  # 0.5, 1, then the cap
    assert set(gaps[3:]) == {robot.stream_restart_backoff_max_s} and times[-1] > 40.0 - 2 * robot.stream_restart_backoff_max_s
    assert h.whats().count("stream_stop") == len(times) > robot.stream_restarts  # on past the point of "gone"
    gone = [r for r in h.rows("flag") if r["flag"] == "audio_gone"]
    assert len(gone) == 1 and gone[0]["action"] == "continue" and gone[0]["restarts"] == robot.stream_restarts
    print(f"measured: {len(times)} restarts in 40 s of call time after the loss, at most "
          f"{max(gaps):g} s apart (before: 5, the last 15.5 s after the loss, then none)")


def test_fault_a_stream_back_after_the_audio_was_given_up_ends_the_restarts():
    h = CallHarness(replies={"stream_restart": "-ERR connect failed\n"}).start()
    _stream_lost_for_good(h)
    h.advance(20.0)
    assert "audio_gone" in h.call.record.flags
    h.replies["stream_restart"] = "+OK\n"  # the audio server is back: the next restart connects
    before = h.whats().count("stream_restart")
    h.advance(h.settings.robot.stream_restart_backoff_max_s)
    restarts = h.whats().count("stream_restart")
    assert restarts == before + 1, "no restart after the audio was given up"
    h.feed(StreamConnected(h.stamp()))
    assert h.rows("audio_gap_end") and h.call.stream_up and "audio_gone" in h.call.record.flags
    h.advance(10.0)
    assert h.whats().count("stream_restart") == restarts  # nothing to restart while it is up


def test_the_restart_back_off_cap_is_range_checked_and_not_below_the_first_back_off():
    assert Settings().robot.stream_restart_backoff_max_s == 2.0
    for value in (0, -1, 61):
        with pytest.raises(ConfigError, match="robot.stream_restart_backoff_max_s"):
            Settings().replace(**{"robot.stream_restart_backoff_max_s": value})
    with pytest.raises(ConfigError, match="must not exceed robot.stream_restart_backoff_max_s"):
        Settings().replace(**{"robot.stream_restart_backoff_s": 3.0})
