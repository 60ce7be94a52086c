"""The switch-side files, checked without a switch: the XML that FreeSWITCH parses, the systemd
units (systemd-analyze verify), the install script's argument handling, and that every command of
docs/freeswitch.md and docs/softphone.md is run by a test of the suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from realswitch_kit import REPO, SCRIPTS, doc_commands

pytestmark = pytest.mark.realswitch

CONF = REPO / "freeswitch_conf"


@pytest.mark.parametrize("path", sorted(p.relative_to(CONF).as_posix() for p in CONF.rglob("*")
                                        if p.suffix == ".xml" or p.name.endswith(".xml.example")))
def test_conf_xml_is_well_formed(path):
    """FreeSWITCH refuses the whole configuration for one bad file (a `--` inside a comment is one)."""
    ET.parse(CONF / path)


def test_no_vanilla_esl_password_and_no_1234():
    import re

    for p in CONF.rglob("*.xml"):
        text = re.sub(r"<!--.*?-->", "", p.read_text(), flags=re.S)
        assert 'value="ClueCon"' not in text, p
        assert "default_password=1234\"" not in text, p


def test_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    fake = tmp_path / "callbot"  # verify checks that ExecStart's binary exists and is executable
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    units = []
    for unit in sorted((CONF / "systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/callbot/.venv/bin/callbot", str(fake))
        name = unit.name.replace("@.service", "@demo.service")
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    assert len(units) == 2
    if "@" in units[1]:  # an instance needs its template beside it
        (tmp_path / "callbot-campaign@.service").write_text((tmp_path / "callbot-campaign@demo.service").read_text())
    proc = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0
    assert "callbot" not in proc.stderr, proc.stderr  # warnings about our files (unknown keys, bad values)


def test_install_script_help_and_refusals(tmp_path):
    script = str(SCRIPTS / "install_freeswitch.sh")
    help_text = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--sources", "--esl-password", "--conf-only", "--print-prefix", "--cache-dir"):
        assert option in help_text
    env = {k: v for k, v in os.environ.items() if k != "CALLBOT_ESL_PASSWORD"}
    no_pw = subprocess.run([script, "--prefix", str(tmp_path / "p"), "--conf-only"], capture_output=True, text=True,
                           env=env)
    assert no_pw.returncode != 0 and "no ESL password" in no_pw.stderr
    cluecon = subprocess.run([script, "--prefix", str(tmp_path / "p"), "--esl-password", "ClueCon"],
                             capture_output=True, text=True, env=env)
    assert cluecon.returncode != 0 and "ClueCon" in cluecon.stderr
    src = tmp_path / "src"
    for tree in ("freeswitch", "sofia-sip", "spandsp", "mod_audio_stream", "libwsc"):
        (src / tree).mkdir(parents=True)
        (src / tree / "README").write_text(tree)
    first = subprocess.run([script, "--sources", str(src), "--cache-dir", str(tmp_path / "cache"), "--print-prefix"],
                           capture_output=True, text=True)
    assert first.returncode == 3  # not built
    prefix = Path(first.stdout.strip())
    assert prefix.parent == tmp_path / "cache" and len(prefix.name) == 16
    (prefix).mkdir(parents=True)
    (prefix / ".callbot-build-complete").write_text("test\n")
    again = subprocess.run([script, "--sources", str(src), "--cache-dir", str(tmp_path / "cache"), "--print-prefix"],
                           capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.strip() == str(prefix)
    skipped = subprocess.run([script, "--sources", str(src), "--cache-dir", str(tmp_path / "cache"), "--no-conf"],
                             capture_output=True, text=True)
    assert skipped.returncode == 0 and "build skipped" in skipped.stderr


HERE = Path(__file__).resolve().parent
# Every command of the docs' ```sh blocks, and the test (file, function or fixture) that runs it.
# None as the fragment: that file takes the command from the doc itself (doc_command(doc, fragment))
# and runs it as written; a fragment: the test runs this variant of it, which the file holds.
DOC_COMMANDS: dict[tuple[str, str], tuple[str, str, str | None]] = {
    ("freeswitch.md", 'export CALLBOT_ESL_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr \'+/\' \'._\')"'):
        ("test_realswitch_docs.py", "test_docs_install_commands", None),
    ("freeswitch.md", 'scripts/install_freeswitch.sh --esl-password "$CALLBOT_ESL_PASSWORD"'):
        ("test_realswitch_docs.py", "test_docs_install_commands", None),
    ("freeswitch.md", 'scripts/install_freeswitch.sh --conf-only --esl-password "$CALLBOT_ESL_PASSWORD"'):
        ("test_realswitch_docs.py", "test_docs_install_commands", None),
    ("freeswitch.md", "P=$(scripts/install_freeswitch.sh --print-prefix)"):
        ("test_realswitch_docs.py", "test_docs_install_commands", None),
    ("freeswitch.md", 'scripts/freeswitch_ctl.sh start "$P"'):
        ("test_realswitch_docs.py", "test_docs_switch_control", None),
    ("freeswitch.md", 'scripts/freeswitch_ctl.sh status "$P"'):
        ("test_realswitch_docs.py", "test_docs_switch_control", None),
    ("freeswitch.md", '"$P/bin/fs_cli" -p "$CALLBOT_ESL_PASSWORD" -x \'module_exists mod_audio_stream\''):
        ("test_realswitch_docs.py", "test_docs_switch_control", None),
    ("freeswitch.md", 'scripts/freeswitch_ctl.sh stop "$P"'):
        ("test_realswitch_docs.py", "test_docs_switch_control", None),
    ("freeswitch.md", "callbot audio-server --host 127.0.0.1 --port 8080 &"):
        ("test_realswitch_docs.py", "test_docs_robot_against_the_switch", None),
    ("freeswitch.md", "export CALLBOT_AUDIO_SERVER_PUBLIC_URL=ws://127.0.0.1:8080"):
        ("test_realswitch_docs.py", "test_docs_robot_against_the_switch", None),
    ("freeswitch.md", "callbot check --audio-url ws://127.0.0.1:8080"):
        ("test_realswitch_docs.py", "test_docs_robot_against_the_switch", None),
    ("freeswitch.md", "callbot call 'loopback/long_reply/callbot_test' --json"):
        ("test_realswitch_docs.py", "test_docs_robot_against_the_switch", None),
    ("freeswitch.md", 'eval "$(bash .ci/realswitch.sh)"'): ("test_realswitch_docs.py", "test_docs_ci_realswitch", None),
    # how this suite is run (.ci/run runs it): the suite itself
    ("freeswitch.md", "python -m pytest -q tests/realswitch"): ("conftest.py", "pytest_configure", "realswitch"),
    ("freeswitch.md", 'scripts/compare_switches.py --prefix "$P" --table > compare.json'):
        ("test_compare_switches.py", "comparison", None),
    ("softphone.md", 'scripts/install_freeswitch.sh --conf-only --esl-password "$CALLBOT_ESL_PASSWORD" '
                     "--softphone-password 'a-long-sip-password' --sip-ip 192.168.1.20"):
        ("test_realswitch_docs.py", "test_docs_softphone_conf_on_a_lan_address", None),
    ("softphone.md", '"$P/bin/fs_cli" -p "$CALLBOT_ESL_PASSWORD" -x \'sofia status profile internal reg\''):
        ("test_realswitch_softphone.py", "softphone", None),
    # the same line as in freeswitch.md (checked below), run there
    ("softphone.md", "callbot audio-server --host 127.0.0.1 --port 8080 &"):
        ("test_realswitch_docs.py", "test_docs_robot_against_the_switch", None),
    # every `callbot call` of the suite runs with these two settings (and the port and host)
    ("softphone.md", "export CALLBOT_ESL_PASSWORD='...' CALLBOT_AUDIO_SERVER_PUBLIC_URL=ws://127.0.0.1:8080"):
        ("realswitch_kit.py", "robot_env", "CALLBOT_ESL_PASSWORD=switch.password,"),
    # `callbot call user/1000 --json --no-db`, the baresip softphone answering
    ("softphone.md", "callbot call user/1000"):
        ("test_realswitch_softphone.py", "test_softphone_barge_in_heard_in_the_recording", 'f"user/{SOFTPHONE_USER}"'),
}


def test_every_docs_command_is_run_by_a_test():
    """A command added to or changed in the docs fails here until a test runs it (and DOC_COMMANDS says which)."""
    in_docs = {(doc, command) for doc in ("freeswitch.md", "softphone.md") for command in doc_commands(doc)}
    assert in_docs - set(DOC_COMMANDS) == set(), "docs commands no test runs (add the test, then DOC_COMMANDS)"
    assert set(DOC_COMMANDS) - in_docs == set(), "DOC_COMMANDS entries no longer in the docs (the docs changed)"
    assert ("freeswitch.md", "callbot audio-server --host 127.0.0.1 --port 8080 &") in in_docs
    import ast
    import re

    for (doc, command), (file, function, fragment) in DOC_COMMANDS.items():
        text = (HERE / file).read_text()
        assert re.search(rf"^(def|    def) {function}\(", text, re.M), f"{file} has no {function}() (for {command!r})"
        if fragment is not None:
            assert fragment in text, f"{file} does not run {command!r} ({fragment!r} not found)"
            continue
        taken = [frag for d, frag in re.findall(r'doc_command\("([a-z]+\.md)", ([\'"].+?[\'"])\)', text)
                 if d == doc or (d == "freeswitch.md" and (d, command) in in_docs)]
        fragments = [ast.literal_eval(frag) for frag in taken]  # string literals of the test file
        assert any(f in command for f in fragments), f"{file} takes no command of docs/{doc} matching {command!r}"
