"""`callbot bench` end to end (a child `callbot` process: simswitch, robot, an audio server process with
the real Whisper model) and its scoring rules on hand-made reports and truths."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from callbot.events import BargeIn, Final, to_json
from callbot.audio_server.stt.engine import SttModelError, resolve_model
from callbot.config import Settings
from callbot.app.bench.score import (barge_in_onset, barge_in_path_ms, final_latencies_ms, percentiles, score_call,
                                summarize)
from callbot.app.replay import FIXTURES_DIR, load_sidecar

CLI = [sys.executable, "-c", "from callbot.app.cli import main; main()"]
CONTRACT_KEYS = {"calls", "wall_s", "barge_in", "stt", "cpu_s", "peak_rss_mb"}
BENCH_FIXTURES = ("long_reply", "pauses_2500ms", "short_yes")  # two barge-ins, one short answer


def _sidecar(name: str) -> dict:
    return load_sidecar(FIXTURES_DIR / f"{name}.wav")


def test_onset_bridges_short_gaps_like_the_detector():
    assert barge_in_onset(_sidecar("pauses_2500ms")["speech"], 1.5, 0.3) == 1.22  # words 0.2 s apart: one utterance
    assert barge_in_onset(_sidecar("two_short")["speech"], 1.5, 0.3) is None  # 0.6 s apart: two short ones
    assert barge_in_onset(_sidecar("short_yes")["speech"], 1.5, 0.3) is None
    assert barge_in_onset([[0.5, 1.0], [3.0, 4.6]], 1.5, 0.3) == 3.0  # the first span long enough


def test_final_latency_counts_from_the_end_of_the_speech_it_transcribes():
    call = "5f3e0f5c-2e39-4259-b3c4-fdae57aeff64"
    heard = Final(t=4.1, text="hello", start_s=0.9, end_s=3.9, avg_logprob=-0.2, no_speech_prob=0.01)
    noise = Final(t=9.0, text="hm", start_s=8.0, end_s=8.6, avg_logprob=-0.9, no_speech_prob=0.3)
    truth = {"stream_start_s": 0.3, "entries": [
        {"kind": "stream_text", "subclass": "mod_audio_stream::json", "t": 4.5, "text": to_json(heard, call)},
        {"kind": "stream_text", "subclass": "mod_audio_stream::json", "t": 9.5, "text": to_json(noise, call)},
        {"kind": "stream_text", "subclass": "mod_audio_stream::json", "t": 9.6, "text": "not an event"},
    ]}
    # speech ends at 3.72 (inside the segment 1.2..4.2); the noise has no span, so its segment end (8.9) counts
    assert final_latencies_ms(truth, [[1.22, 3.72]]) == [780.0, 600.0]


def test_barge_in_path_splits_the_latency_between_detector_server_and_switch():
    call = "5f3e0f5c-2e39-4259-b3c4-fdae57aeff64"
    event = BargeIn(t=2.72, onset_s=1.22, duration_ms=1500)  # stream time; the stream started 0.3 s into the call
    truth = {"stream_start_s": 0.3, "entries": [{"kind": "stream_text", "subclass": "mod_audio_stream::json",
                                                 "t": 3.08, "arrived_t": 3.07, "text": to_json(event, call)}]}
    side = {"speech": [[1.5, 4.0]]}  # due at 1.5 + 1.5 = 3.0 s of call time
    assert barge_in_path_ms(truth, side, 1.5, 0.3) == {"decided": 20.0, "arrived": 70.0, "relayed": 80.0}
    assert barge_in_path_ms(truth, {"speech": [[1.5, 2.0]]}, 1.5, 0.3) is None  # nothing should barge in


def test_summary_counts_missed_false_and_failed_calls():
    side_yes, side_no = _sidecar("long_reply"), _sidecar("short_yes")
    broke = {"call_uuid": "a", "disposition": "x", "amd": "human", "transcripts": [],
             "barge_ins": [{"speech_onset_s": 1.5, "detected_s": 3.0, "break_at_switch_s": 3.04}]}
    quiet = {**broke, "barge_ins": [{"speech_onset_s": 1.5, "detected_s": 3.0, "break_at_switch_s": None}]}
    rows = [score_call("long_reply.wav", broke, None, side_yes, 1.5, 0.3),
            score_call("long_reply.wav", quiet, None, side_yes, 1.5, 0.3),
            score_call("short_yes.wav", broke, None, side_no, 1.5, 0.3),
            score_call("short_yes.wav", None, None, side_no, 1.5, 0.3, error="EslError: gone")]
    barge = summarize(rows)["barge_in"]
    assert {k: barge[k] for k in ("expected", "detected", "missed", "false")} == \
        {"expected": 2, "detected": 1, "missed": 1, "false": 1}
    assert barge["latency_ms"]["max"] == pytest.approx(30.0)  # 3.04 - (1.51 + 1.5)
    assert percentiles([5, 1, 4, 2, 3], (50, 95)) == {"p50": 3, "p95": 5}


def test_an_amd_notsure_counts_as_what_the_scenario_does_with_it():
    """The robot treats ``notsure`` as the scenario's ``voicemail.on_notsure``: the bench scores that, as amd-report does."""
    side = _sidecar("silence")  # expect.amd: human; nobody speaks, so the verdict is notsure
    unsure = {"call_uuid": "a", "disposition": "x", "amd": "notsure", "transcripts": [], "barge_ins": []}
    machine = {**unsure, "amd": "machine"}
    as_human = [score_call("silence.wav", unsure, None, side, 1.5, 0.3), score_call("silence.wav", machine, None, side, 1.5, 0.3)]
    assert [r["amd_acted"] for r in as_human] == ["human", "machine"]
    assert {k: summarize(as_human)[k] for k in ("amd_mismatches", "amd_notsure")} == {"amd_mismatches": 1, "amd_notsure": 1}
    as_machine = [score_call("silence.wav", unsure, None, side, 1.5, 0.3, notsure_as="machine")]
    assert summarize(as_machine)["amd_mismatches"] == 1


def _bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "bench", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_bad_arguments_say_what_to_pass(tmp_path):
    out = _bench("--calls", "0")
    assert out.returncode != 0 and "bench.max_calls" in out.stderr
    out = _bench("--fixtures", str(tmp_path))
    assert out.returncode != 0 and "sidecar" in out.stderr


def test_a_small_real_bench_scores_every_call(tmp_path):
    try:
        resolve_model(Settings().stt)
    except SttModelError as exc:
        pytest.skip(f"the bench's audio server needs the Whisper model: {exc}")
    for name in BENCH_FIXTURES:
        for ext in (".wav", ".json"):
            shutil.copy(FIXTURES_DIR / f"{name}{ext}", tmp_path / f"{name}{ext}")
    # Speed 2, not 10: at 10x four calls are forty real-time streams plus Whisper, an overload on two shared
    # cores (the barge-in events then queue for seconds); this test is about scoring every call.
    out = _bench("--calls", "4", "--speed", "2", "--fixtures", str(tmp_path), "--json", timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "bench: 4/4 calls finished" in out.stderr
    doc = json.loads(out.stdout)
    assert CONTRACT_KEYS <= doc.keys()
    assert doc["calls"] == 4 and doc["failed"] == 0 and doc["wall_s"] > 0
    rows = doc["per_call"]
    assert [r["fixture"] for r in rows] == [f"{n}.wav" for n in (*BENCH_FIXTURES, BENCH_FIXTURES[0])]

    barge = doc["barge_in"]
    assert set(barge) == {"expected", "detected", "missed", "false", "latency_ms"}
    assert barge["expected"] == 3  # long_reply twice, pauses_2500ms once (their sidecars)
    assert (barge["detected"], barge["missed"], barge["false"]) == (3, 0, 0), json.dumps(rows)
    assert set(barge["latency_ms"]) == {"p50", "p95", "p99", "max"}
    for value in barge["latency_ms"].values():
        # finite, and never before onset + threshold by more than a media tick's rounding
        assert math.isfinite(value) and -25 < value < 1000, barge

    stt = doc["stt"]
    assert set(stt) == {"finals", "final_latency_ms", "rtf"}
    assert stt["finals"] >= 4  # every call has speech; every speech segment gets a final
    assert all(math.isfinite(v) and v > 0 for v in stt["final_latency_ms"].values()), stt
    assert 0 < stt["rtf"] < 5
    long_reply = rows[0]["transcript"].lower()
    assert all(word in long_reply for word in _sidecar("long_reply")["expect"]["contains"]), long_reply

    assert set(doc["cpu_s"]) == {"audio_server", "robot", "switch"}
    assert doc["cpu_s"]["audio_server"] > 0 and doc["cpu_s"]["switch"] > 0
    lag = doc["switch_tick_lag_ms"]  # how late the load generator ran its media ticks: measured, not made up
    assert set(lag) == {"p50", "p95", "p100"} and 0 <= lag["p50"] <= lag["p95"] <= lag["p100"] < 5000, lag
    assert all(isinstance(v, float) and v > 0 for v in doc["cpu_s"].values())
    by_process = doc["peak_rss_mb_by_process"]
    assert doc["peak_rss_mb"] == pytest.approx(by_process["audio_server"] + by_process["bench"], abs=0.2)
    assert by_process["audio_server"] > 50  # the Whisper model is resident there
