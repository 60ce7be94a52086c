"""A real softphone: baresip 1.0.0 (Debian 12) registered to the real switch as the directory user
1000 (freeswitch_conf/directory/default/callbot_softphone.xml), auto-answering, with a WAV of real
speech as its microphone (module aufile) and the decoded audio it hears recorded (module sndfile).
The robot calls it with `callbot call user/1000`.

The recording shows where the caller stopped hearing the prompt. baresip's sndfile dump holds the
decoded frames as they arrive, and FreeSWITCH sends no RTP while the robot's leg is parked, so the
recording starts with the greeting and the gap after the break is squeezed out: the greeting's
length in it is the time the caller heard it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from realswitch_kit import (
    REPO, SOFTPHONE_USER, Switch, call_events, doc_command, free_port, print_sequence, run_call, run_shell,
)

pytestmark = pytest.mark.realswitch

THRESHOLD_S = 1.5
TICK_S = 0.020  # PLAYBACK_STOP (break) comes on the media tick after uuid_break
FRAME = 160  # 20 ms at 8 kHz


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
        if w.getnchannels() == 2:
            data = data[0::2]
        return data, w.getframerate()


def to_8k(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == 8000:
        return x
    if rate == 16000:  # a two-tap average then decimation is enough for an envelope
        x = x[: len(x) // 2 * 2]
        return (x[0::2] + x[1::2]) / 2
    raise ValueError(f"unexpected rate {rate}")


def envelope_db(x: np.ndarray) -> np.ndarray:
    """Level of each 20 ms frame, dB of the int16 RMS (speech 50-75, the fixtures' noise about 30)."""
    n = len(x) // FRAME
    frames = x[: n * FRAME].reshape(n, FRAME)
    return 20 * np.log10(np.sqrt((frames ** 2).mean(axis=1)) + 1.0)


def find_fixture(name: str) -> Path:
    for d in ("tests/fixtures/calls", "callbot/demo_calls", "tests/fixtures/amd"):
        if (REPO / d / name).exists():
            return REPO / d / name
    found = [p for p in REPO.rglob(name) if ".venv" not in p.parts]
    if not found:
        pytest.skip(f"fixture {name} not found in the repository")
    return found[0]


def find_prompt(name: str) -> Path:
    found = sorted(p for p in REPO.rglob(name) if ".venv" not in p.parts and "16000" in p.parts)
    if not found:
        pytest.skip(f"prompt {name} not found in the repository")
    return found[0]


def padded_mic(src: Path, dest: Path, total_s: float) -> Path:
    """The fixture at 8 kHz mono, padded with silence: aufile ends the call at the end of its file."""
    x, rate = read_wav(src)
    x = to_8k(x, rate)
    out = np.zeros(int(total_s * 8000))
    out[: len(x)] = x[: len(out)]
    with wave.open(str(dest), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(out.astype(np.int16).tobytes())
    return dest


class Baresip:
    """baresip with a config of its own: SIP on a free loopback port, the `cons` console on UDP for
    key presses (DTMF digits), aufile as microphone, ALSA's null device as speaker, sndfile dumps."""

    def __init__(self, switch: Switch, home: Path, mic: Path) -> None:
        self.home = home
        self.rec = home / "rec"
        self.rec.mkdir(parents=True, exist_ok=True)
        self.cons_port = free_port()
        sip_port = free_port()
        (home / "config").write_text(f"""\
poll_method		epoll
sip_listen		127.0.0.1:{sip_port}
net_interface		127.0.0.1
audio_player		alsa,null
audio_alert		alsa,null
audio_source		aufile,{mic}
module_path		/usr/lib/baresip/modules
module			cons.so
module			g711.so
module			aufile.so
module			alsa.so
module			sndfile.so
module_app		account.so
module_app		menu.so
cons_listen		127.0.0.1:{self.cons_port}
snd_path		{self.rec}
""")
        # the account: user 1000 on the switch's internal profile, auto-answer, G.711 only
        (home / "accounts").write_text(
            f"<sip:{SOFTPHONE_USER}@127.0.0.1:5060>;auth_pass={switch.softphone_password};answermode=auto;"
            "audio_codecs=PCMU,PCMA\n")
        (home / "contacts").write_text("")
        self.log = home / "baresip.log"
        self.proc = subprocess.Popen(["baresip", "-f", str(home)], stdin=subprocess.DEVNULL,
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if "200 OK" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"baresip did not register:\n{self.log.read_text(errors='replace')}")

    def keys(self, keys: str, gap_s: float = 0.5) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for key in keys:
                s.sendto(key.encode(), ("127.0.0.1", self.cons_port))
                time.sleep(gap_s)

    def dumps(self) -> tuple[Path, Path]:
        dec = sorted(self.rec.glob("dump-*-dec.wav"))
        enc = sorted(self.rec.glob("dump-*-enc.wav"))
        assert dec and enc, f"no sndfile dumps in {self.rec}:\n{self.log.read_text(errors='replace')[-3000:]}"
        return dec[-1], enc[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def softphone(switch, tmp_path):
    if shutil.which("baresip") is None:
        pytest.skip("baresip is not installed (apt-get install baresip-core; .ci/realswitch.sh does)")
    started: list[Baresip] = []

    def start(mic: Path) -> Baresip:
        phone = Baresip(switch, tmp_path / "baresip", mic)
        started.append(phone)
        # docs/softphone.md: check the registration on the switch
        reg = run_shell(doc_command("softphone.md", "sofia status profile internal reg"), P=str(switch.prefix),
                        CALLBOT_ESL_PASSWORD=switch.password)
        assert reg.returncode == 0 and re.search(rf"User:\s+{SOFTPHONE_USER}@", reg.stdout), reg.stdout
        return phone

    yield start
    for phone in started:
        phone.stop()
        print(f"--- baresip log ---\n{phone.log.read_text(errors='replace')[-2500:]}")


def prompt_heard_s(heard: np.ndarray, prompt: np.ndarray) -> float:
    """How long the recording follows the prompt from its start. The recording is aligned on the
    prompt's opening (best lag within 0.5 s), then compared in 50 ms windows by normalised
    correlation of the waveforms (G.711 and resampling keep it above 0.8 where they match); the
    prompt ends at the first of 3 windows in a row below 0.5 (the next prompt follows right after
    the break in the recording, since the switch sends nothing in between)."""
    n = 6000
    lag = max(range(0, 4000), key=lambda k: abs(float(np.dot(heard[k:k + n], prompt[:n]))))
    heard = heard[lag:]
    win, low = 400, 0
    length = min(len(heard), len(prompt))
    for i in range(0, length - win, win):
        a, b = heard[i:i + win], prompt[i:i + win]
        if max(np.sqrt(np.mean(a * a)), np.sqrt(np.mean(b * b))) < 100:  # both silent: no verdict
            continue
        corr = float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b) + 1e-9))
        low = low + 1 if corr < 0.5 else 0
        if low == 3:
            return (i - 2 * win) / 8000
    return length / 8000


def test_softphone_barge_in_heard_in_the_recording(switch, recorder, audio_server, workdir, softphone, tmp_path):
    source = find_fixture("long_reply_8k.wav")
    onset = json.loads(source.with_suffix(".json").read_text())["speech"][0][0]
    phone = softphone(padded_mic(source, tmp_path / "mic.wav", 25.0))
    result = run_call(switch, audio_server, recorder, f"user/{SOFTPHONE_USER}", workdir, settle_s=2.0)
    phone.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.report
    assert report["prompts"] and report["prompts"][0]["file"] == "greeting.wav", report.get("prompts")
    assert report["prompts"][0]["status"] == "break", report["prompts"]
    assert report["barge_ins"], "no barge-in"

    events = call_events(result.events, result.uuid)
    answer = next(e for e in events if e.name == "CHANNEL_ANSWER" and e.uuid == result.uuid)
    start = next(e for e in events if e.name == "PLAYBACK_START" and e.uuid == result.uuid)
    stop = next(e for e in events if e.name == "PLAYBACK_STOP" and e.uuid == result.uuid)
    bug = next((e for e in events if e.name == "MEDIA_BUG_START" and e.uuid == result.uuid), None)
    api = {e.get("API-Command"): e for e in reversed(events) if e.name == "API"}
    started = next((e for e in events if e.name == "CUSTOM::mod_audio_stream::json" and '"speech_started"' in e.get("_body")),
                   None)
    assert bug is not None and started is not None, "no MEDIA_BUG_START or no speech_started from the audio server"
    print(f"softphone timing: CHANNEL_ANSWER received by this client {(answer.recv - answer.t) * 1000:+.0f} ms after its "
          f"stamp; uuid_audio_stream (API) {api['uuid_audio_stream'].t - answer.t if 'uuid_audio_stream' in api else 0:.3f} s, "
          f"MEDIA_BUG_START {bug.t - answer.t:.3f} s after the answer; the audio server's "
          f"speech_started: {started.get('_body')}")
    dec, enc = phone.dumps()
    heard, _ = read_wav(dec)
    sent, _ = read_wav(enc)
    greeting, rate = read_wav(find_prompt("greeting.wav"))
    heard_s = prompt_heard_s(heard, to_8k(greeting, rate))
    mic_onset = int(np.argmax(envelope_db(sent) > 45.0)) * FRAME / 8000
    assert abs(mic_onset - onset) < 0.1  # the phone sent the fixture: its speech starts where the sidecar says
    # 1. The phone heard the greeting break where the switch stopped it. The recording starts with the
    #    greeting (the switch sends nothing before it), so its length of greeting is the switch's
    #    PLAYBACK_START..STOP span, give or take G.711 windows and the phone's jitter buffer.
    played = stop.t - start.t
    # 2. The switch stopped it where the caller passed 1.5 s. When baresip opens its microphone (some
    #    100-300 ms after the answer) is the phone's business; when the caller's speech reached the
    #    switch is in the stream: MEDIA_BUG_START + the audio server's speech_started (stream time).
    speech_at = bug.t + json.loads(started.get("_body"))["t"]
    latency = stop.t - TICK_S - (speech_at + THRESHOLD_S)
    print(f"softphone: the recording has {heard_s:.2f} s of greeting, the switch played {played:.3f} s "
          f"({(heard_s - played) * 1000:+.0f} ms); caller's speech reached the switch {speech_at - answer.t:.3f} s after "
          f"the answer (the phone's microphone opened {speech_at - answer.t - mic_onset:.3f} s after it); PLAYBACK_STOP "
          f"break less one tick {latency * 1000:+.0f} ms from that + 1.5 s")
    assert abs(heard_s - played) <= 0.1
    assert -0.060 <= latency <= 0.060


def test_softphone_dtmf_events(switch, recorder, audio_server, workdir, softphone, tmp_path):
    """How the real switch reports the softphone's keys: one DTMF event per digit on the robot's
    leg (RFC 2833 telephone-events from baresip), with DTMF-Digit, DTMF-Duration and DTMF-Source."""
    phone = softphone(padded_mic(find_fixture("silence.wav"), tmp_path / "mic.wav", 30.0))
    mark = recorder.mark()
    import threading

    def press() -> None:  # while the greeting plays (the robot answers with its greeting at once)
        time.sleep(2.5)
        # baresip 1.0.0's console holds a digit down until the next DTMF digit arrives (another
        # key does not release it): the trailing "0" ends the "*", and is itself never ended
        phone.keys("1#9*0", gap_s=0.4)

    presser = threading.Thread(target=press)
    presser.start()
    result = run_call(switch, audio_server, recorder, f"user/{SOFTPHONE_USER}", workdir, settle_s=1.0)
    presser.join()
    phone.stop()
    dtmf = [e for e in recorder.since(mark) if e.name == "DTMF"]
    for e in dtmf:
        print("DTMF event:", {k: e.get(k) for k in ("Unique-ID", "Channel-Name", "DTMF-Digit", "DTMF-Duration",
                                                    "DTMF-Source", "Channel-Call-State", "Answer-State",
                                                    "Event-Calling-Function", "variable_dtmf_type")})
    robot_dtmf = [e for e in result.report.get("events", []) if "dtmf" in str(e.get("type", "")).lower()]
    print(f"DTMF in the robot's report: {robot_dtmf}")
    print_sequence(dtmf, result.uuid, "DTMF only")
    assert [e.get("DTMF-Digit") for e in dtmf][:4] == list("1#9*")
    assert all(e.uuid == result.uuid for e in dtmf), "DTMF came on another leg than the robot's"
    assert all(e.get("DTMF-Source") == "RTP" for e in dtmf)
    assert all(int(e.get("DTMF-Duration")) > 0 for e in dtmf)
