"""Helpers of the real-FreeSWITCH suite: find the installed switch, start and stop it, record its
ESL events, and run the robot through its command line only (the Python internals may move).

Nothing here imports the project: the switch is driven with scripts/freeswitch_ctl.sh and a
plain-socket ESL client, the robot with ``callbot`` subprocesses.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
ARCHIVE_NAME = "freeswitch-1.10.12-sources.tar.xz"
ESL_PORT = 8021
TEST_CONTEXT = "callbot_test"
SOFTPHONE_USER = "1000"


# ---- finding the switch -------------------------------------------------------------------------

def shared_archive() -> Path | None:
    """The sources archive beside the clone (../shared/realswitch/), or under $CALLBOT_SHARED_DIR."""
    candidates = []
    if os.environ.get("CALLBOT_FS_SOURCES"):
        candidates.append(Path(os.environ["CALLBOT_FS_SOURCES"]))
    if os.environ.get("CALLBOT_SHARED_DIR"):
        candidates.append(Path(os.environ["CALLBOT_SHARED_DIR"]) / "realswitch" / ARCHIVE_NAME)
    candidates.append(REPO.parent / "shared" / "realswitch" / ARCHIVE_NAME)
    return next((c for c in candidates if c.exists()), None)


def find_prefix() -> tuple[Path | None, str]:
    """(prefix, "") when a built switch is found, else (None, the reason the suite skips)."""
    env = os.environ.get("CALLBOT_FREESWITCH_PREFIX")
    if env:
        prefix = Path(env)
        if not (prefix / "bin" / "freeswitch").exists():
            return None, f"CALLBOT_FREESWITCH_PREFIX={env} has no bin/freeswitch"
        return prefix, ""
    cmd = [str(SCRIPTS / "install_freeswitch.sh"), "--print-prefix"]
    archive = shared_archive()
    if archive is not None:
        cmd[1:1] = ["--sources", str(archive)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    prefix = Path(proc.stdout.strip()) if proc.stdout.strip() else None
    if proc.returncode != 0 or prefix is None or not (prefix / "bin" / "freeswitch").exists():
        where = f"from {archive}" if archive else "(no ../shared/realswitch/ sources beside the clone)"
        return None, (f"no FreeSWITCH built {where} at {prefix}: run scripts/install_freeswitch.sh "
                      f"or .ci/realswitch.sh, or set CALLBOT_FREESWITCH_PREFIX")
    return prefix, ""


def callbot_exe() -> list[str]:
    """The callbot console script of the Python running the tests."""
    beside = Path(sys.executable).parent / "callbot"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("callbot")
    if found:
        return [found]
    return [sys.executable, "-c", "from callbot.cli import main; main()"]


# Variables of the switch tooling, not robot settings: callbot refuses every CALLBOT_* variable that
# names no settings section, so they are kept out of the robot's environment.
TOOLING_VARS = ("CALLBOT_FREESWITCH_PREFIX", "CALLBOT_FS_CACHE", "CALLBOT_FS_SOURCES", "CALLBOT_SOFTPHONE_PASSWORD",
                "CALLBOT_FS_START_TIMEOUT")


def callbot_environ(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TOOLING_VARS}
    env.update(settings)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the switch ---------------------------------------------------------------------------------

@dataclass
class Switch:
    prefix: Path
    password: str
    softphone_password: str
    port: int = ESL_PORT

    def ctl(self, action: str, *extra: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        env = dict(os.environ, CALLBOT_ESL_PASSWORD=self.password)
        return subprocess.run([str(SCRIPTS / "freeswitch_ctl.sh"), action, str(self.prefix), *extra],
                              capture_output=True, text=True, env=env, check=check, timeout=timeout)

    def fs_cli(self, command: str) -> str:
        """Run one API command with fs_cli (as the docs tell an admin to)."""
        proc = subprocess.run([str(self.prefix / "bin" / "fs_cli"), "-H", "127.0.0.1", "-P", str(self.port),
                               "-p", self.password, "-x", command], capture_output=True, text=True, timeout=30)
        return proc.stdout

    def api(self, command: str) -> str:
        return esl_api(self.port, self.password, command)

    def log_tail(self, lines: int = 60) -> str:
        log = self.prefix / "log" / "freeswitch.log"
        if not log.exists():
            return "(no freeswitch.log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def prepare_switch(prefix: Path) -> Switch:
    """Lay the repository's freeswitch_conf/ over the prefix with fresh passwords (what the
    install script does after a build), so the suite always runs the configuration in the tree."""
    switch = Switch(prefix, "rs-" + secrets.token_hex(12), secrets.token_hex(8))
    stop = switch.ctl("stop", check=False)  # a switch left over by an interrupted session
    proc = subprocess.run([str(SCRIPTS / "install_freeswitch.sh"), "--prefix", str(prefix), "--conf-only",
                           "--esl-password", switch.password, "--softphone-password", switch.softphone_password],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"install_freeswitch.sh --conf-only failed:\n{stop.stderr}{proc.stderr}")
    return switch


# ---- a plain ESL client -------------------------------------------------------------------------

class EslConnection:
    """An inbound Event Socket connection: authenticate, send commands, read messages."""

    def __init__(self, port: int, password: str, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        headers, _ = self.read()
        if headers.get("Content-Type") != "auth/request":
            raise RuntimeError(f"ESL greeting: {headers}")
        reply = self.command(f"auth {password}")
        if not reply.get("Reply-Text", "").startswith("+OK"):
            raise RuntimeError(f"ESL auth refused: {reply}")

    def read(self) -> tuple[dict[str, str], bytes]:
        headers: dict[str, str] = {}
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("ESL connection closed")
            line = line.rstrip(b"\r\n")
            if not line:
                if headers:
                    break
                continue
            name, _, value = line.decode().partition(":")
            headers[name.strip()] = urllib.parse.unquote(value.strip())
        body = b""
        if "Content-Length" in headers:
            body = self.file.read(int(headers["Content-Length"]))
        return headers, body

    def send(self, command: str) -> None:
        self.sock.sendall(command.encode() + b"\n\n")

    def command(self, command: str) -> dict[str, str]:
        self.send(command)
        while True:
            headers, _ = self.read()
            if headers.get("Content-Type") == "command/reply":
                return headers

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def esl_api(port: int, password: str, command: str) -> str:
    conn = EslConnection(port, password)
    try:
        conn.send(f"api {command}")
        while True:
            headers, body = conn.read()
            if headers.get("Content-Type") == "api/response":
                return body.decode(errors="replace")
    finally:
        conn.close()


@dataclass
class Event:
    t: float  # Event-Date-Timestamp, epoch seconds: the switch's clock, which advances in 20 ms steps
    name: str  # Event-Name, or CUSTOM::<subclass>
    h: dict
    recv: float = 0.0  # time.time() when this client read it (finer, but after the event dispatch)

    @property
    def uuid(self) -> str:
        return self.h.get("Unique-ID", "")

    def get(self, key: str, default: str = "") -> str:
        return self.h.get(key, default)


class EventRecorder:
    """Every event the switch emits (`event json ALL`), in a background thread. When the switch
    drops the connection (`reload mod_event_socket`), it connects again and goes on recording;
    what was emitted in between is lost, and ``outages`` says when (time.time() pairs)."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self.events: list[Event] = []
        self.outages: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        self.closed = False
        self.conn = self._connect()
        self.thread = threading.Thread(target=self._run, name="esl-recorder", daemon=True)
        self.thread.start()

    def _connect(self) -> EslConnection:
        conn = EslConnection(self.switch.port, self.switch.password)
        reply = conn.command("event json ALL")
        if not reply.get("Reply-Text", "").startswith("+OK"):
            raise RuntimeError(f"event json ALL: {reply}")
        conn.sock.settimeout(None)
        return conn

    def _run(self) -> None:
        while not self.closed:
            try:
                self._read()
            except (EOFError, OSError, ValueError):
                pass
            if self.closed:
                return
            lost = time.time()
            while not self.closed:  # the switch is reloading its event socket: come back as soon as it listens
                time.sleep(0.05)
                try:
                    self.conn = self._connect()
                    break
                except (OSError, RuntimeError, EOFError):
                    if time.time() - lost > 60:
                        return
            self.outages.append((lost, time.time()))

    def _read(self) -> None:
        while True:
            headers, body = self.conn.read()
            if headers.get("Content-Type") != "text/event-json":
                continue
            h = json.loads(body)
            name = h.get("Event-Name", "")
            if name == "CUSTOM":
                name = "CUSTOM::" + h.get("Event-Subclass", "")
            ev = Event(int(h.get("Event-Date-Timestamp", "0")) / 1e6, name, h, time.time())
            with self.lock:
                self.events.append(ev)

    def snapshot(self) -> list[Event]:
        with self.lock:
            return list(self.events)

    def mark(self) -> int:
        with self.lock:
            return len(self.events)

    def since(self, mark: int) -> list[Event]:
        with self.lock:
            return self.events[mark:]

    def wait_for(self, mark: int, name: str, timeout: float, **match: str) -> Event | None:
        """The first event ``name`` (with these headers) recorded since ``mark``, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = first(self.since(mark), name, **match)
            if found is not None:
                return found
            time.sleep(0.01)
        return None

    def close(self) -> None:
        self.closed = True
        self.conn.close()


NOISE = {"HEARTBEAT", "RE_SCHEDULE", "MESSAGE_QUERY", "PRESENCE_IN", "CHANNEL_CALLSTATE", "CALL_UPDATE",
         "CHANNEL_STATE", "CUSTOM::sofia::register_attempt", "RECV_RTCP_MESSAGE", "SEND_MESSAGE",
         "MESSAGE_WAITING", "CUSTOM::sofia::pre_register", "PRESENCE_PROBE", "CODEC", "CALL_SECURE"}


def call_events(events: list[Event], call_uuid: str) -> list[Event]:
    """The events of one call: its A leg and every leg that names it (the loopback B leg, a bridge)."""
    legs = {call_uuid}
    for ev in events:  # the loopback pair names each other; a bridge names the other leg
        for key in ("variable_other_loopback_leg_uuid", "Other-Leg-Unique-ID", "variable_originator"):
            if ev.get(key) in legs and ev.uuid:
                legs.add(ev.uuid)
            if ev.uuid in legs and ev.get(key):
                legs.add(ev.get(key))
    return [ev for ev in events if ev.uuid in legs or call_uuid in ev.get("Job-Command-Arg")
            or call_uuid in ev.get("API-Command-Argument")]


def describe(ev: Event, t0: float, call_uuid: str) -> str:
    leg = "A" if ev.uuid == call_uuid else ("B" if ev.uuid else ("api" if ev.name == "API" else "-"))
    extra = []
    for key in ("API-Command", "API-Command-Argument", "Application", "Application-Data", "Playback-File-Path",
                "Playback-Status", "DTMF-Digit", "DTMF-Duration", "DTMF-Source", "Hangup-Cause", "Answer-State",
                "Channel-Name"):
        if ev.get(key) and not (key == "Channel-Name" and ev.name not in ("CHANNEL_CREATE",)):
            value = ev.get(key)
            if key in ("Playback-File-Path", "Application-Data", "API-Command-Argument"):
                value = value[-60:]
            extra.append(f"{key}={value}")
    if ev.name == "CUSTOM::mod_audio_stream::json":
        body = ev.h.get("_body", "")
        extra.append(body[:120])
    return f"{ev.t - t0:8.3f}  {leg}  {ev.name:34s} {' '.join(extra)}"


def print_sequence(events: list[Event], call_uuid: str, title: str) -> list[str]:
    """Print (and return) the raw event sequence of a call, relative to its first event."""
    mine = [ev for ev in call_events(events, call_uuid) if ev.name not in NOISE]
    t0 = mine[0].t if mine else 0.0
    lines = [describe(ev, t0, call_uuid) for ev in mine]
    print(f"\n--- raw ESL event sequence: {title} (A = {call_uuid}) ---")
    print("\n".join(lines))
    return lines


# ---- the robot's processes ----------------------------------------------------------------------

@dataclass
class AudioServer:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def start_audio_server(workdir: Path, stt: bool = True, port: int | None = None, own_group: bool = False,
                       workers: int | None = None) -> AudioServer:
    """`callbot audio-server` on ``port`` (a free one by default), once it answers /healthz; with
    ``own_group``, in a process group of its own (its supervisor and workers), so a test can kill it whole."""
    port = port or free_port()
    log = workdir / f"audio-server-{port}.log"
    cmd = [*callbot_exe(), "audio-server", "--host", "127.0.0.1", "--port", str(port)]
    if not stt:
        cmd.append("--no-stt")
    if workers is not None:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("ab"), cwd=workdir, env=callbot_environ(),
                            start_new_session=own_group)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"callbot audio-server exited {proc.returncode}:\n{log.read_text()}")
        if healthy(port):
            return AudioServer(proc, port, log)
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"callbot audio-server did not answer /healthz:\n{log.read_text()}")


def healthy(port: int) -> bool:
    """The audio server on ``port`` answers ``GET /healthz`` with 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(100).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def robot_env(switch: Switch, audio: AudioServer, **settings: str) -> dict[str, str]:
    """The robot's settings as CALLBOT_<SECTION>_<FIELD> variables (see `callbot config`)."""
    env = callbot_environ()
    env.update(CALLBOT_ESL_HOST="127.0.0.1", CALLBOT_ESL_PORT=str(switch.port), CALLBOT_ESL_PASSWORD=switch.password,
               CALLBOT_AUDIO_SERVER_PUBLIC_URL=audio.url)
    env.update(settings)
    return env


@dataclass
class CallResult:
    destination: str
    returncode: int
    report: dict
    stderr: str
    wall_s: float
    events: list[Event] = field(default_factory=list)

    @property
    def uuid(self) -> str:
        return self.report.get("call_uuid", "")


@dataclass
class RunningCall:
    """A `callbot call` still running (see start_call); ``finish`` waits for it and returns its CallResult."""

    proc: subprocess.Popen
    destination: str
    recorder: EventRecorder
    mark: int
    started: float

    def answer(self, timeout: float = 30) -> Event | None:
        """The robot leg's CHANNEL_ANSWER (the robot's leg is the one created for the originate)."""
        return self.recorder.wait_for(self.mark, "CHANNEL_ANSWER", timeout, Call_Direction="outbound")

    def finish(self, timeout: float = 180, settle_s: float = 1.0) -> CallResult:
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, stderr = self.proc.communicate()
            stderr += f"\n(killed by the test after {timeout} s)"
        wall = time.monotonic() - self.started
        time.sleep(settle_s)  # the last events (CHANNEL_DESTROY of the B leg) follow the robot's exit
        try:
            report = json.loads(stdout) if stdout.strip() else {}
        except json.JSONDecodeError:
            report = {"_stdout": stdout}
        events = self.recorder.since(self.mark)
        result = CallResult(self.destination, self.proc.returncode, report, stderr, wall, events)
        print(f"\n=== callbot call {self.destination}: exit {self.proc.returncode}, {wall:.1f} s ===")
        print(stderr[-6000:])
        print(json.dumps({k: v for k, v in report.items() if k != "events"}, indent=1)[:4000])
        if result.uuid:
            print_sequence(result.events, result.uuid, self.destination)
        return result


def start_call(switch: Switch, audio: AudioServer, recorder: EventRecorder, destination: str, workdir: Path,
               **settings: str) -> RunningCall:
    """Start `callbot call DESTINATION --json --no-db` and return at once."""
    mark = recorder.mark()
    proc = subprocess.Popen([*callbot_exe(), "call", destination, "--json", "--no-db"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=robot_env(switch, audio, **settings), cwd=workdir)
    return RunningCall(proc, destination, recorder, mark, time.monotonic())


def run_call(switch: Switch, audio: AudioServer, recorder: EventRecorder, destination: str, workdir: Path,
             timeout: float = 180, settle_s: float = 1.0, **settings: str) -> CallResult:
    """`callbot call DESTINATION --json --no-db`: the JSON report plus the switch's events of the call."""
    return start_call(switch, audio, recorder, destination, workdir, **settings).finish(timeout, settle_s)


def first(events: list[Event], name: str, **match: str) -> Event | None:
    for ev in events:
        if ev.name == name and all(ev.get(k.replace("_", "-")) == v or ev.get(k) == v for k, v in match.items()):
            return ev
    return None


# ---- the docs' commands -------------------------------------------------------------------------

DOCS = {"freeswitch.md": REPO / "docs" / "freeswitch.md", "softphone.md": REPO / "docs" / "softphone.md"}


def doc_commands(doc: str) -> list[str]:
    """The commands of a doc's ```sh blocks: one per line, `\\` continuations joined, trailing comments cut."""
    import re

    commands = []
    for block in re.findall(r"```sh\n(.*?)```", DOCS[doc].read_text(), re.S):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def doc_command(doc: str, fragment: str) -> str:
    """The one command of ``doc`` that contains ``fragment``, exactly as the doc has it."""
    found = [c for c in doc_commands(doc) if fragment in c]
    if len(found) != 1:
        raise AssertionError(f"docs/{doc}: {len(found)} commands contain {fragment!r}: {found}")
    return found[0]


def run_shell(command: str, cwd: Path = REPO, timeout: float = 300, robot: bool = False,
              **env: str) -> subprocess.CompletedProcess:
    """Run a docs command with bash (`set -eu -o pipefail`), the venv's `callbot` first on PATH (as after
    `pip install`). With ``robot``, the switch tooling's CALLBOT_* variables are kept out (callbot refuses them)."""
    base = callbot_environ() if robot else dict(os.environ)
    base.update(env)
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=base, capture_output=True,
                          text=True, timeout=timeout)
    print(f"$ {command}\n(exit {proc.returncode})\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc
