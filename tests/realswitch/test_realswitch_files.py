"""The switch-side files, checked without a switch: the XML that FreeSWITCH parses, the systemd
units (systemd-analyze verify), and the install script's argument handling."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from realswitch_kit import REPO, SCRIPTS

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
