"""The commands of docs/freeswitch.md and docs/softphone.md, taken from the docs and run as written
with bash, against the suite's switch.

Where a command would change the switch this session runs (the install and its configuration), it
runs against a scratch prefix: a copy of the suite's prefix configuration under CALLBOT_FS_CACHE, found
by the same key (the sources archive's hash, CALLBOT_FS_SOURCES as CI sets it). Port 8080 becomes a
free port. test_realswitch_files.py checks that every command of the docs is run here or by another
test of the suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from realswitch_kit import (
    SCRIPTS, callbot_environ, doc_command, free_port, healthy, run_shell, shared_archive, stop_process,
)

pytestmark = pytest.mark.realswitch

STAMP = ".callbot-build-complete"


@pytest.fixture
def archive() -> Path:
    found = shared_archive()
    if found is None:
        pytest.skip("no ../shared/realswitch/ sources archive: the install commands are run with it (as CI does)")
    return found


@pytest.fixture
def scratch(switch, archive, tmp_path) -> dict[str, str]:
    """The install script's environment for a scratch prefix: the suite's built configuration copied
    where the script looks for the archive's key under CALLBOT_FS_CACHE, stamped as built."""
    cache = tmp_path / "cache"
    env = {"CALLBOT_FS_SOURCES": str(archive), "CALLBOT_FS_CACHE": str(cache)}
    env_clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOT_")}
    proc = subprocess.run([str(SCRIPTS / "install_freeswitch.sh"), "--print-prefix"], capture_output=True, text=True,
                          env={**env_clean, **env}, timeout=120)
    assert proc.returncode == 3, proc.stderr  # not built there yet
    prefix = Path(proc.stdout.strip())
    assert prefix.parent == cache
    shutil.copytree(switch.prefix / "conf", prefix / "conf", symlinks=True)
    (prefix / STAMP).write_text("a scratch copy of the suite's configuration (test_realswitch_docs.py)\n")
    return env


def scratch_prefix(env: dict[str, str]) -> Path:
    return next(Path(env["CALLBOT_FS_CACHE"]).iterdir())


def test_docs_install_commands(scratch):
    """freeswitch.md 1: the password, the install (a built prefix: build skipped, configuration laid
    down), the configuration again, and the prefix."""
    prefix = scratch_prefix(scratch)
    script = "\n".join([
        doc_command("freeswitch.md", "head -c 18 /dev/urandom"),
        doc_command("freeswitch.md", 'scripts/install_freeswitch.sh --esl-password "$CALLBOT_ESL_PASSWORD"'),
        doc_command("freeswitch.md", "--conf-only"),
        doc_command("freeswitch.md", "--print-prefix"),
        'echo "password=$CALLBOT_ESL_PASSWORD prefix=$P"',
    ])
    proc = run_shell(script, **scratch)
    assert proc.returncode == 0
    assert f"already built in {prefix}" in proc.stderr and "build skipped" in proc.stderr
    assert "--conf-only: build skipped" in proc.stderr
    said = dict(part.split("=", 1) for part in proc.stdout.strip().splitlines()[-1].split())
    assert said["prefix"] == str(prefix)
    password = said["password"]
    assert re.fullmatch(r"[A-Za-z0-9._]{24}", password), password  # what the script accepts, XML- and shell-safe
    vars_xml = prefix / "conf" / "callbot_vars.xml"
    assert f"callbot_esl_password={password}" in vars_xml.read_text()
    assert stat.S_IMODE(vars_xml.stat().st_mode) == 0o600
    for laid in ("callbot_vars.xml", "autoload_configs/event_socket.conf.xml", "dialplan/callbot_test.xml",
                 "directory/default/callbot_softphone.xml"):
        ET.parse(prefix / "conf" / laid)
    assert sorted(p.name for p in (prefix / "sounds" / "callbot").glob("*.wav"))


def test_docs_softphone_conf_on_a_lan_address(scratch):
    """softphone.md 1: the configuration laid down again for a phone on the LAN (--sip-ip)."""
    prefix = scratch_prefix(scratch)
    command = doc_command("softphone.md", "--sip-ip")
    proc = run_shell(command, CALLBOT_ESL_PASSWORD="docs-" + os.urandom(6).hex(), **scratch)
    assert proc.returncode == 0
    text = (prefix / "conf" / "callbot_vars.xml").read_text()
    assert "callbot_softphone_password=a-long-sip-password" in text
    assert "192.168.1.20" in text
    ET.parse(prefix / "conf" / "callbot_vars.xml")


def test_docs_switch_control(switch):
    """freeswitch.md 2 on the running switch: start (it is up: nothing to do), status, module_exists,
    the `cli` form, then stop and start again (the recorder and the robot reconnect after it)."""
    env = {"P": str(switch.prefix), "CALLBOT_ESL_PASSWORD": switch.password}
    start = doc_command("freeswitch.md", "freeswitch_ctl.sh start")
    status = run_shell(doc_command("freeswitch.md", "freeswitch_ctl.sh status"), **env)
    assert status.returncode == 0 and status.stdout.startswith("UP ")
    exists = run_shell(doc_command("freeswitch.md", "module_exists mod_audio_stream"), **env)
    assert exists.returncode == 0 and exists.stdout.strip() == "true"
    cli = run_shell("scripts/freeswitch_ctl.sh cli \"$P\" -- -x 'show channels'", **env)  # freeswitch.md 2, prose
    assert cli.returncode == 0 and "total." in cli.stdout
    again = run_shell(start, **env)
    assert again.returncode == 0 and "already running" in again.stderr
    stopped = run_shell(doc_command("freeswitch.md", "freeswitch_ctl.sh stop"), **env)
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    down = run_shell(doc_command("freeswitch.md", "freeswitch_ctl.sh status") + " || echo \"exit $?\"", **env)
    assert "is not running" in down.stdout and down.stdout.strip().endswith("exit 3")
    started = time.monotonic()
    up = run_shell(start, **env)
    assert up.returncode == 0 and "up (pid" in up.stderr, switch.log_tail()
    print(f"the switch was back {time.monotonic() - started:.1f} s after `freeswitch_ctl.sh start`")


def test_docs_robot_against_the_switch(switch, tmp_path):
    """freeswitch.md 3: an audio server, `callbot check`, and a call to the long-reply test callee,
    recorded in callbot.db of the current directory."""
    port = str(free_port())
    lines = [doc_command("freeswitch.md", "callbot audio-server"),
             doc_command("freeswitch.md", "export CALLBOT_AUDIO_SERVER_PUBLIC_URL"),
             doc_command("freeswitch.md", "callbot check"),
             doc_command("freeswitch.md", "callbot call 'loopback/long_reply")]
    lines = [line.replace("8080", port) for line in lines]
    assert lines[0].endswith("&")
    env = {"CALLBOT_ESL_PASSWORD": switch.password, "CALLBOT_ESL_PORT": str(switch.port)}
    log = tmp_path / "audio-server.log"
    server_env = callbot_environ(**env)
    server_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{server_env['PATH']}"
    # the background line as a process of its own; then wait, as the doc says, for "audio server listening"
    server = subprocess.Popen(["bash", "-c", f"exec {lines[0][:-1].strip()}"], cwd=tmp_path, env=server_env,
                              stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        deadline = time.monotonic() + 120
        while "audio server listening" not in log.read_text(errors="replace"):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        assert healthy(int(port))
        proc = run_shell("\n".join(lines[1:]), cwd=tmp_path, robot=True, timeout=180, **env)
    finally:
        stop_process(server)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("\n{") + 1:] if not proc.stdout.startswith("{")
                        else proc.stdout)
    assert report["disposition"] == "callback" and report["barge_ins"], report.get("disposition")
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("callbot.db*"))  # SQLite, WAL beside it
    assert report["call_uuid"].encode() in stored, "the call was not recorded in ./callbot.db"


def test_docs_ci_realswitch(switch, archive):
    """freeswitch.md 5: `.ci/realswitch.sh` exports the prefix of the cached build. It lays the
    configuration down with a password of its own, so the suite's is put back after it."""
    proc = run_shell(doc_command("freeswitch.md", ".ci/realswitch.sh") + '\necho "prefix=$CALLBOT_FREESWITCH_PREFIX"',
                     CALLBOT_FS_SOURCES=str(archive))
    try:
        assert proc.returncode == 0
        assert proc.stdout.strip().splitlines()[-1] == f"prefix={switch.prefix}"
    finally:
        restore = subprocess.run([str(SCRIPTS / "install_freeswitch.sh"), "--prefix", str(switch.prefix), "--conf-only",
                                  "--esl-password", switch.password, "--softphone-password", switch.softphone_password],
                                 capture_output=True, text=True, timeout=120)
        assert restore.returncode == 0, restore.stderr
    assert f"callbot_esl_password={switch.password}" in (switch.prefix / "conf" / "callbot_vars.xml").read_text()
