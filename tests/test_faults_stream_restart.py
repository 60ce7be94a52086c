"""Fault suite, a lost audio stream restarted, at the level of the sans-I/O call (fake clock): the timeline after it.

Found by test_faults_kills.py's audio server kill: once the robot restarts `uuid_audio_stream`,
the new stream's time starts again at 0 (a new media bug, a new MEDIA_BUG_START). Each stream now
has its own offset in the timeline, so the restarted stream's rows are dated from its own start.
"""

from __future__ import annotations

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
