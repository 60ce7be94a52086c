"""`callbot replay`: simswitch, the audio server and the robot in one process, one call, one report.

Each part runs in its own thread (simswitch and the audio server each on an asyncio loop, the
robot on a gevent hub) and they talk only through sockets on 127.0.0.1 with free ports, exactly
as separate processes would. The callee's voice is the fixture WAV; the report follows DESIGN
section 5, with ``break_at_switch_s`` and the stream's start taken from simswitch's ground truth.
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlencode

from callbot.audio_server.server import AudioServer
from callbot.config import Settings
from callbot.loop_thread import LoopThread
from callbot.robot.call.record import CallRecord
from callbot.robot.esl.client import EslClient
from callbot.robot.shell.gevent_thread import GeventThread
from callbot.robot.shell.one_call import run_one_call
from callbot.robot.report import build_report
from callbot.robot.scenario.loader import bundled_scenario, load_scenario
from callbot.simswitch import SimSwitchThread
from callbot.app.lockstep import IN_PROCESS, paced
from callbot.resources import demo_calls_dir

REPLAY_SWITCH_INTERVAL_S = 0.0005  # at speed N every wall ms is N ms of call time: switch threads often
FIXTURES_DIR = demo_calls_dir()


class ReplayError(ValueError):
    """The replay cannot start (bad fixture, scenario or speed); the message says what to pass instead."""


def resolve_fixture(fixture: str) -> Path:
    """A WAV path, or a bundled fixture name such as ``long_reply``."""
    path = Path(fixture)
    for candidate in (path, path.with_suffix(".wav"), FIXTURES_DIR / fixture, FIXTURES_DIR / f"{fixture}.wav"):
        if candidate.is_file() and candidate.suffix == ".wav":
            return candidate.resolve()
    names = ", ".join(sorted(p.stem for p in FIXTURES_DIR.glob("*.wav"))) if FIXTURES_DIR.is_dir() else "none"
    raise ReplayError(f"fixture {fixture!r} is neither a .wav file nor a bundled fixture; bundled: {names}")


def replay_settings(settings: Settings) -> Settings:
    """Settings for an in-process replay: at speed N, speech recognition has N times more audio per wall
    second, so it decodes finals only, on fewer threads (robot.replay_stt_*), and the barge-in path keeps a core.
    No speculative decode in pauses either: the replay's clock waits for every decode, so starting the final's
    decode early gains no call time there and only costs wall time."""
    return settings.replace(**{"stt.partials": settings.robot.replay_stt_partials,
                               "stt.cpu_threads": settings.robot.replay_stt_cpu_threads,
                               "stt.speculative_final_ms": 0})


def load_sidecar(wav: Path) -> dict[str, Any] | None:
    """``NAME.json`` beside ``NAME.wav`` (DESIGN section 5), if there is one."""
    side = wav.with_suffix(".json")
    return json.loads(side.read_text(encoding="utf-8")) if side.is_file() else None


@contextlib.contextmanager
def _latency_mode() -> Iterator[None]:
    """For the length of one replayed call: switch threads often, and no cyclic-GC pauses.

    At speed N every wall millisecond is N ms of call time. A gen-1 collection here takes up to
    2.5 ms (25 ms of call time at speed 10), so the cyclic collector waits until the call is over
    (reference counting still frees almost everything; one call's cycles are bounded).
    """
    old = sys.getswitchinterval()
    was_enabled = gc.isenabled()
    sys.setswitchinterval(REPLAY_SWITCH_INTERVAL_S)
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(old)
        if was_enabled:
            gc.enable()
            gc.collect()


@contextlib.contextmanager
def audio_server_thread(settings: Settings, loop: LoopThread | None = None) -> Iterator[int]:
    """The audio server on a free port in its own loop thread; yields the port (replays on it find it by port).

    ``loop``: on that running loop thread instead (simswitch's, in a lockstep run: each media frame then goes
    to the server and back without waking another thread). Its decodes are not niced (``stt.decode_nice`` 0):
    in a lockstep run the clock waits for each one, so nothing of the run goes ahead of it, and a nice
    decode only loses the CPU to other processes."""
    own = loop is None
    loop = LoopThread("audio-server").start() if loop is None else loop
    server = AudioServer(settings.replace(**{"stt.decode_nice": 0}))
    try:
        loop.run(server.start("127.0.0.1", 0))
        IN_PROCESS[server.port] = server
        yield server.port
    finally:
        IN_PROCESS.pop(server.port, None)
        server.close()
        with contextlib.suppress(Exception):
            loop.run(server.wait_closed(), timeout=5)
        if own:
            loop.stop()


def replay(fixture: str, settings: Settings, *, scenario: str | None = None, speed: float = 10.0,
           audio: bool = True, audio_port: int | None = None, dial_options: dict[str, str] | None = None,
           on_entry: Callable[[dict[str, Any]], None] | None = None,
           on_client: Callable[[EslClient], None] | None = None,
           on_truth: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run one replayed call and return its report (DESIGN section 5 keys).

    ``audio=False`` points the robot at a closed port: the audio server is unreachable, and the
    call must go on without barge-in (a fault test). ``audio_port`` reuses an audio server already
    listening there (tests share one, so its model loads once). ``dial_options`` are simswitch callee options
    (``{"hangup_after_s": "4"}``, see simswitch.callees). ``on_truth`` gets simswitch's ground truth
    of the answered call (``CallTruth.as_dict()``: prompts, breaks, stream start).
    """
    if not 0.1 <= speed <= 100:
        raise ReplayError(f"--speed {speed} is outside 0.1..100")
    wav = resolve_fixture(fixture)
    settings = replay_settings(settings)
    scenario_path = Path(scenario) if scenario else Path(settings.robot.scenario or bundled_scenario())
    sc = load_scenario(scenario_path, rate=settings.robot.prompt_rate, prompts_dir=settings.prompts.path())
    with _latency_mode(), SimSwitchThread(
            speed=speed, esl_port=0, password=settings.simswitch.password, fixtures_dir=wav.parent) as switch:
        if audio_port is not None:
            audio_ctx: contextlib.AbstractContextManager[int] = contextlib.nullcontext(audio_port)
        else:
            audio_ctx = audio_server_thread(settings, switch.thread) if audio else contextlib.nullcontext(_closed_port())
        with audio_ctx as audio_port, paced(switch, audio_port, lead_s=settings.simswitch.lockstep_lead_s) as pacer:
            run_settings = wired_settings(settings, switch.esl_port, audio_port, speed)
            robot = GeventThread("robot")
            robot.start()
            try:
                dest = f"fixture/{wav}" + (f"?{urlencode(dial_options)}" if dial_options else "")
                record: CallRecord = robot.call(
                    run_one_call, run_settings, sc, dest, on_entry=on_entry, on_client=on_client,
                    call_time=pacer.call(), timeout=600)
            finally:
                robot.stop()
            report, truth = report_with_truth(switch, record, wav.name)
            if truth is not None and on_truth is not None:
                on_truth(truth)
            return report


def wired_settings(settings: Settings, esl_port: int, audio_port: int, speed: float) -> Settings:
    """The robot's settings for a simswitch on ``esl_port`` and an audio server on ``audio_port`` (127.0.0.1)."""
    return settings.replace(**{
        "esl.host": "127.0.0.1", "esl.port": esl_port, "esl.password": settings.simswitch.password,
        "audio_server.host": "127.0.0.1", "audio_server.port": audio_port,
        "audio_server.public_url": f"ws://127.0.0.1:{audio_port}", "robot.speed": speed})


def report_with_truth(switch: SimSwitchThread, record: CallRecord, fixture: str,
                      ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The call's report dated by the switch's ground truth (stream start, breaks), and that truth."""
    truth = switch.truth(record.call_uuid) if record.timeline.answer_us is not None else None
    report = build_report(record, fixture=fixture, stream_start_s=truth["stream_start_s"] if truth else None,
                          truth_breaks=truth["breaks"] if truth else None)
    return report, truth


def _closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
