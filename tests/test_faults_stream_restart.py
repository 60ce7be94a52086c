"""Fault suite, a lost audio stream restarted, at the level of the sans-I/O call (fake clock): the timeline after it.

Found by test_faults_kills.py's audio server kill: once the robot restarts `uuid_audio_stream`,
the new stream's time starts again at 0 (a new media bug, a new MEDIA_BUG_START), but the call's
timeline keeps the first stream's offset, so every later audio row is dated seconds too early
("0.052 caller starts speaking" printed after "3.579 FLAG audio_stream_lost").
"""

from __future__ import annotations

import pytest

from callbot.events import SpeechStarted
from callbot.robot.call.events import MediaBugStarted, StreamConnected, StreamLost
from call_harness import CallHarness


@pytest.mark.xfail(strict=True, reason="robot/call/call.py (MediaBugStarted) sets timeline.stream_offset_s only "
                   "when it is None: the restarted stream's MEDIA_BUG_START is ignored and its audio rows are "
                   "dated by the first stream's offset (4.1 s of call time comes out as 0.1 s)")
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
