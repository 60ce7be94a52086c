"""Scenario TOML: the declarative call script, loaded and checked completely before any call.

A scenario is a set of named steps. Each step plays one prompt (one file per uuid_broadcast),
says whether the caller may barge in on it, and then either listens for a reply and branches on
its intent, or goes on to ``next``, or ends the call with a ``disposition``::

    [scenario]
    name = "survey_en"
    language = "en"            # intent rules (robot.intents) and prompt language
    start = "greeting"
    audio_dir = "../../prompts_audio/en"   # optional; relative to this file; default <prompts_dir>/<language>

    [voicemail]
    on_machine = "leave_message"   # or "hangup"
    message = "voicemail"          # the step to play after the beep
    on_notsure = "human"           # or "machine"
    on_no_beep = "leave_message"   # no beep once the greeting went quiet: leave it anyway, or "hangup"
    disposition = "voicemail"

    [intents]                       # optional extra phrases per intent (yes, no, later, stop)
    later = ["next month"]

    [steps.greeting]
    prompt = "greeting.wav"         # <audio_dir>/<rate>/greeting.wav
    text = "Hello, ..."             # what the prompt says (timeline; STT context)
    barge_in = true
    listen_s = 6.0                  # listening window: how long to wait for a reply to start
    on = { yes = "confirm", no = "goodbye", later = "later", stop = "remove", default = "repeat" }

Outcomes a listening step branches on: the intents, ``unknown`` (a reply without a known
intent) and ``silence`` (no reply in the window); ``default`` covers any not named.

Optional in ``[scenario]``: ``max_call_s`` (the call's longest length from the answer; at most the
robot's ``robot.max_call_s``, which applies when it is not given), ``on_audio_lost`` (``continue``
without barge-in, or ``hangup``) for a call whose audio stream is lost and cannot be restarted, and
``opt_out``: the final step that ends the call when the callee opts out, by an opt-out key
(``campaign.opt_out_dtmf``) at any moment or by the ``stop`` intent at a step that does not branch on
it. By default it is the step every ``on.stop`` branch leads to, when they all lead to one final step;
without one, an opt-out hangs up once the prompt playing has stopped.

Loading reports every error at once, each with its location (``file:line: steps.<name>.<key>``),
and refuses what would fail only in a call (robot.scenario.checks): prompt paths the switch cannot
play, loops that no reply can leave, a ``max_call_s`` too short for the quickest way through.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import soundfile

from callbot.audio_format import DEFAULT_RATE, RATES
from callbot.resources import bundled_folder
from callbot.resources import prompts_dir as prompts_dir_default
from callbot.robot.esl.commands import MAX_CALL_LIMIT_S
from callbot.robot.scenario.checks import located, loop_problems, prompt_problems, shortest_run
from callbot.robot.scenario.intents import INTENTS, OPTIONAL_INTENTS, IntentMatcher

OUTCOMES: tuple[str, ...] = (*INTENTS, "unknown", "silence")
MACHINE_ACTIONS = ("hangup", "leave_message")
NOTSURE_ACTIONS = ("human", "machine")
BARGE_IN_MODES = ("break", "pause")
AUDIO_LOST_ACTIONS = ("continue", "hangup")
# what the audio stream's metadata (JSON on the switch's command line) and the timeline carry unescaped
_NAME = re.compile(r"^[\w .+-]{1,100}$")


class ScenarioError(ValueError):
    """A scenario that cannot run; the message lists every problem with its location."""

    def __init__(self, source: str, problems: list[str], lines: list[int | None] | None = None) -> None:
        self.problems = problems
        self.lines = lines or [None] * len(problems)
        lines = "\n".join(f"  {source}{'' if n is None else f':{n}'}: {p}" for p, n in zip(problems, self.lines))
        super().__init__(f"scenario {source} has {len(problems)} error(s):\n{lines}")


@dataclass(frozen=True)
class Step:
    """One prompt and what follows it."""

    name: str
    prompt: Path | None  # the file to play at the chosen rate; None ends the call silently
    text: str
    barge_in: bool
    listen_s: float | None  # None: no listening window after the prompt
    branches: Mapping[str, str]  # outcome -> step name ("default" allowed)
    next: str | None
    disposition: str | None  # set on a final step: the call ends with it after the prompt
    duration_s: float = 0.0  # the prompt's length, read at load
    barge_in_mode: str = "break"  # break: uuid_break at the mark; pause: pause at the onset, then break or resume
    backchannel: bool = False  # pause mode only: a partial of backchannel words alone at the mark resumes the prompt

    def branch(self, outcome: str) -> str | None:
        """The step to go to after a reply with this outcome (None: this step has no branches)."""
        return self.branches.get(outcome, self.branches.get("default"))


@dataclass(frozen=True)
class Voicemail:
    """What to do when AMD says a machine answered."""

    on_machine: str  # hangup | leave_message
    message: str | None  # step to play after the beep
    on_notsure: str  # human | machine
    disposition: str
    on_no_beep: str = "leave_message"  # leave_message | hangup: no beep after the greeting (robot.no_beep_silence_s)


def acted_verdict(result: str | None, on_notsure: str) -> str | None:
    """The AMD verdict a call acts on: ``notsure`` is taken as the scenario's ``voicemail.on_notsure``."""
    return on_notsure if result == "notsure" else result


@dataclass(frozen=True)
class Scenario:
    """A loaded, validated scenario: every file exists and every reference resolves."""

    name: str
    language: str
    start: str
    steps: Mapping[str, Step]
    voicemail: Voicemail
    intents: IntentMatcher
    source: Path
    max_call_s: float | None = None  # None: the robot's robot.max_call_s
    on_audio_lost: str = "continue"  # continue (without barge-in) | hangup, once the stream cannot be restarted
    opt_out: str | None = None  # the final step an opt-out (key or spoken) ends the call with; None: hang up

    def step(self, name: str) -> Step:
        return self.steps[name]


class _Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def need(self, table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
             default: Any = ..., allow_none: bool = False) -> Any:
        if key not in table:
            if default is ...:
                self.problems.append(f"{_dot(where, key)}: missing (required)")
            return None if default is ... else default
        value = table[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            self.problems.append(f"{_dot(where, key)}: expected a number, got {value!r}")
            return None
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.problems.append(f"{_dot(where, key)}: expected {names}, got {value!r}")
            return None
        return value

    def unknown_keys(self, table: Mapping[str, Any], known: set[str], where: str) -> None:
        for key in sorted(set(table) - known):
            self.problems.append(f"{_dot(where, key)}: unknown key; known keys: {', '.join(sorted(known))}")


def _dot(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def bundled_scenario(name: str = "survey_en") -> Path:
    """A scenario shipped inside the package (``survey_en``, ``survey_fr``)."""
    return bundled_folder("callbot.robot.scenario", "bundled") / f"{name}.toml"


def load_scenario(path: str | Path, rate: int = DEFAULT_RATE, prompts_dir: str | Path | None = None, *,
                  max_call_s: float | None = None) -> Scenario:
    """Read and validate a scenario; raise ScenarioError listing every problem (never fails later, in a call).

    ``max_call_s`` is the robot's own limit (robot.max_call_s): the scenario's may not exceed it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ScenarioError(str(path), ["file does not exist; pass --scenario with an existing .toml"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), [f"cannot be read as UTF-8 text: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), [f"not valid TOML: {exc}"]) from None
    except RecursionError:
        raise ScenarioError(str(path), ["not valid TOML: nested too deeply"]) from None
    if rate not in RATES:
        raise ScenarioError(str(path), [f"prompt rate {rate} is not one of {RATES}"])
    try:
        return _build(data, path, rate, Path(prompts_dir) if prompts_dir else prompts_dir_default(),
                      MAX_CALL_LIMIT_S if max_call_s is None else max_call_s)
    except ScenarioError as exc:
        raise ScenarioError(str(path), exc.problems, located(exc.problems, text)) from None


def _build(data: Mapping[str, Any], path: Path, rate: int, prompts_dir: Path, max_call_limit_s: float) -> Scenario:
    c = _Checker()
    c.unknown_keys(data, {"scenario", "voicemail", "intents", "steps"}, "")
    head = c.need(data, "scenario", dict, "", default={}) or {}
    c.unknown_keys(head, {"name", "language", "start", "audio_dir", "max_call_s", "on_audio_lost", "opt_out"},
                   "scenario")
    name = c.need(head, "name", str, "scenario", default=path.stem)
    if name is not None and not _NAME.fullmatch(name):
        c.problems.append(f"scenario.name: {name[:60]!r} must be 1-100 letters, digits, spaces or _ . + - "
                          "(it travels unescaped in the stream metadata and the timeline)")
    max_call_s = c.need(head, "max_call_s", (int, float), "scenario", default=None)
    if max_call_s is not None and not 0 < max_call_s <= max_call_limit_s:
        c.problems.append(f"scenario.max_call_s: {max_call_s} is outside (0, {max_call_limit_s:g}] seconds; "
                          "the robot's robot.max_call_s is the most a scenario may ask for")
        max_call_s = None
    on_audio_lost = c.need(head, "on_audio_lost", str, "scenario", default="continue")
    if on_audio_lost is not None and on_audio_lost not in AUDIO_LOST_ACTIONS:
        c.problems.append(f"scenario.on_audio_lost: {on_audio_lost!r} is not one of {', '.join(AUDIO_LOST_ACTIONS)}")
    language = c.need(head, "language", str, "scenario")
    start = c.need(head, "start", str, "scenario")
    audio_dir_value = c.need(head, "audio_dir", str, "scenario", default=None)
    if audio_dir_value:
        audio_dir = (path.parent / audio_dir_value).resolve()
    else:
        audio_dir = prompts_dir / (language or "")
    if not audio_dir.is_dir():
        c.problems.append(f"scenario.audio_dir: directory {audio_dir} does not exist; "
                          "run scripts/make_prompts.py or set audio_dir")

    extra = c.need(data, "intents", dict, "", default={}) or {}
    known = (*INTENTS, *OPTIONAL_INTENTS)
    for key, phrases in extra.items():
        if key not in known:
            c.problems.append(f"intents.{key}: unknown intent; intents are {', '.join(known)}")
        elif not (isinstance(phrases, list) and all(isinstance(p, str) and p.strip() for p in phrases)):
            c.problems.append(f"intents.{key}: expected a list of non-empty strings")
    intents = None
    if language is not None:
        try:
            intents = IntentMatcher.for_language(
                language, {k: v for k, v in extra.items() if k in known and isinstance(v, list)})
        except ValueError as exc:
            c.problems.append(f"scenario.language: {exc}")

    raw_steps = c.need(data, "steps", dict, "", default={}) or {}
    if not raw_steps:
        c.problems.append("steps: a scenario needs at least one [steps.<name>] table")
    steps = {n: _step(c, n, t, audio_dir, rate, prompts_dir) for n, t in raw_steps.items() if isinstance(t, dict)}
    for n, t in raw_steps.items():
        if not isinstance(t, dict):
            c.problems.append(f"steps.{n}: expected a table [steps.{n}]")

    vm_raw = c.need(data, "voicemail", dict, "", default={}) or {}
    c.unknown_keys(vm_raw, {"on_machine", "message", "on_notsure", "on_no_beep", "disposition"},
                   "voicemail")
    voicemail = Voicemail(
        on_machine=c.need(vm_raw, "on_machine", str, "voicemail", default="hangup"),
        message=c.need(vm_raw, "message", str, "voicemail", default=None),
        on_notsure=c.need(vm_raw, "on_notsure", str, "voicemail", default="human"),
        disposition=c.need(vm_raw, "disposition", str, "voicemail", default="machine"),
        on_no_beep=c.need(vm_raw, "on_no_beep", str, "voicemail", default="leave_message"),
    )
    if voicemail.on_machine not in MACHINE_ACTIONS:
        c.problems.append(f"voicemail.on_machine: {voicemail.on_machine!r} is not one of {MACHINE_ACTIONS}")
    if voicemail.on_no_beep not in MACHINE_ACTIONS:
        c.problems.append(f"voicemail.on_no_beep: {voicemail.on_no_beep!r} is not one of {MACHINE_ACTIONS}")
    if voicemail.on_notsure not in NOTSURE_ACTIONS:
        c.problems.append(f"voicemail.on_notsure: {voicemail.on_notsure!r} is not one of {NOTSURE_ACTIONS}")
    if voicemail.on_machine == "leave_message" and not voicemail.message:
        c.problems.append("voicemail.message: required when on_machine = \"leave_message\"")

    _check_references(c, steps, start, voicemail)
    opt_out = _opt_out_step(c, steps, c.need(head, "opt_out", str, "scenario", default=None))
    c.problems.extend(f"{key}: {message}" for key, message in loop_problems(steps))
    quickest = shortest_run(steps, start) if start is not None else None
    if max_call_s is not None and quickest is not None and quickest[0] > max_call_s:
        c.problems.append(f"scenario.max_call_s: {max_call_s} s is shorter than the quickest way through the "
                          f"scenario ({quickest[0]:.1f} s of prompts: {' -> '.join(quickest[1])})")
    if c.problems:
        raise ScenarioError(str(path), c.problems)
    assert intents is not None and language is not None and start is not None
    return Scenario(name, language, start, steps, voicemail, intents, path, max_call_s=max_call_s,
                    on_audio_lost=on_audio_lost or "continue", opt_out=opt_out)


def _opt_out_step(c: _Checker, steps: Mapping[str, Step], named: str | None) -> str | None:
    """``scenario.opt_out`` (checked: a final step), else the one final step every ``on.stop`` leads to, else None."""
    if named is not None:
        if named not in steps:
            c.problems.append(f"scenario.opt_out: no step named {named!r}")
        elif steps[named].disposition is None:
            c.problems.append(f"scenario.opt_out: step {named!r} must be a final step (with a disposition): "
                              "an opt-out ends the call")
        return named
    targets = {step.branches["stop"] for step in steps.values() if "stop" in step.branches}
    (only,) = targets if len(targets) == 1 else (None,)
    return only if only in steps and steps[only].disposition is not None else None


def _step(c: _Checker, name: str, t: Mapping[str, Any], audio_dir: Path, rate: int, prompts_dir: Path) -> Step:
    where = f"steps.{name}"
    c.unknown_keys(t, {"prompt", "text", "barge_in", "barge_in_mode", "backchannel", "listen_s", "on", "next",
                       "disposition"}, where)
    prompt_name = c.need(t, "prompt", str, where, default=None)
    prompt, duration = None, 0.0
    if prompt_name is not None:
        prompt = (audio_dir / str(rate) / prompt_name).resolve()
        c.problems.extend(f"{where}.prompt: {p}" for p in prompt_problems(prompt, audio_dir, prompts_dir))
        if not prompt.is_file():
            c.problems.append(f"{where}.prompt: file {prompt} does not exist")
        else:
            duration = _check_wav(c, f"{where}.prompt", prompt, rate)
    listen = c.need(t, "listen_s", (int, float), where, default=None)
    if listen is not None and not 0 < listen <= 120:
        c.problems.append(f"{where}.listen_s: {listen} is outside (0, 120] seconds")
    branches = c.need(t, "on", dict, where, default={}) or {}
    for outcome, target in branches.items():
        if outcome not in (*OUTCOMES, *OPTIONAL_INTENTS, "default"):
            c.problems.append(f"{where}.on.{outcome}: unknown outcome; outcomes are "
                              f"{', '.join((*OUTCOMES, *OPTIONAL_INTENTS))}, default")
        if not isinstance(target, str):
            c.problems.append(f"{where}.on.{outcome}: expected a step name, got {target!r}")
    step = Step(
        name=name, prompt=prompt, text=c.need(t, "text", str, where, default=""),
        barge_in=c.need(t, "barge_in", bool, where, default=True), listen_s=listen,
        branches={k: v for k, v in branches.items() if isinstance(v, str)},
        next=c.need(t, "next", str, where, default=None),
        disposition=c.need(t, "disposition", str, where, default=None), duration_s=duration,
        barge_in_mode=c.need(t, "barge_in_mode", str, where, default="break"),
        backchannel=c.need(t, "backchannel", bool, where, default=False),
    )
    if step.barge_in_mode not in BARGE_IN_MODES:
        c.problems.append(f"{where}.barge_in_mode: {step.barge_in_mode!r} is not one of {', '.join(BARGE_IN_MODES)}")
    if step.backchannel and step.barge_in_mode != "pause":
        c.problems.append(f"{where}.backchannel: needs barge_in_mode = \"pause\" (the decision never waits on STT)")
    ways = [bool(step.branches), step.next is not None, step.disposition is not None]
    if sum(ways) != 1:
        c.problems.append(f"{where}: give exactly one of `on` (branch on the reply), `next` or `disposition`")
    if step.branches and step.listen_s is None:
        c.problems.append(f"{where}.listen_s: a step that branches on the reply needs a listening window")
    if step.branches and "default" not in step.branches:
        missing = [o for o in OUTCOMES if o not in step.branches]
        if missing:
            c.problems.append(f"{where}.on: outcomes {', '.join(missing)} go nowhere; name them or add `default`")
    if prompt_name is None and step.disposition is None:
        c.problems.append(f"{where}.prompt: missing (only a final step with a disposition may have none)")
    return step


def _check_wav(c: _Checker, where: str, path: Path, rate: int) -> float:
    """The prompt's duration; a file that is not a mono WAV at ``rate`` is a problem (FreeSWITCH would resample
    or refuse it mid-call)."""
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        c.problems.append(f"{where}: {path} is not a readable audio file ({exc})")
        return 0.0
    if info.samplerate != rate or info.channels != 1:
        c.problems.append(f"{where}: {path} is {info.samplerate} Hz with {info.channels} channel(s); "
                          f"prompts under {rate}/ must be mono {rate} Hz (scripts/make_prompts.py)")
    return info.duration


def _check_references(c: _Checker, steps: Mapping[str, Step], start: str | None, vm: Voicemail) -> None:
    if start is not None and steps and start not in steps:
        c.problems.append(f"scenario.start: no step named {start!r}; steps are {', '.join(steps)}")
    if vm.message is not None and vm.message not in steps:
        c.problems.append(f"voicemail.message: no step named {vm.message!r}")
    for step in steps.values():
        refs = [(f"on.{k}", v) for k, v in step.branches.items()]
        if step.next is not None:
            refs.append(("next", step.next))
        for key, target in refs:
            if target not in steps:
                c.problems.append(f"steps.{step.name}.{key}: no step named {target!r}")
