"""README's Campaigns section works as written: its settings table loads, and its commands, run in order against
simswitch (on its virtual clock) and an audio server, create, import, dial, report and chart a small campaign."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import tomllib

from callbot.app.replay import audio_server_thread
from callbot.config import Settings
from callbot.robot.campaign.settings import effective
from callbot.simswitch import SimSwitchThread

README = Path(__file__).resolve().parents[1] / "README.md"
START = "2024-06-03T14:00:00Z"  # Monday, 10:00 in New York


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Campaigns"):text.index("\n## ", text.index("## Campaigns") + 3)]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), re.S)


def test_the_settings_table_is_a_valid_campaign_table():
    table = tomllib.loads(_blocks("toml")[0])["campaign"]
    rules = effective(Settings(), table, "README")
    assert rules.retry_after["busy"] == 600 and rules.retry_after["machine"] == 14400


def test_the_commands_run_as_written(tmp_path):
    commands = [line.split("#")[0].strip() for line in _blocks("sh")[0].splitlines() if line.strip()]
    assert [c.split()[:3] for c in commands][:2] == [["callbot", "db", "upgrade"], ["callbot", "campaign", "create"]]
    (tmp_path / "campaign.toml").write_text(_blocks("toml")[0])
    (tmp_path / "contacts.csv").write_text("number,name\n(212) 555-0101,Ann\n+12125550199,Bob\n")
    (tmp_path / "callees.csv").write_text("number,callee\n+12125550101,fixture/short_yes\n")
    with audio_server_thread(Settings().replace(**{"stt.enabled": False})) as audio_port, \
            SimSwitchThread(speed=5, esl_port=0, password="pw", callees=tmp_path / "callees.csv",
                            cdr=tmp_path / "cdr.jsonl", start=START) as switch:
        env = {**os.environ, "CALLBOT_DB_URL": f"sqlite:///{tmp_path / 'callbot.db'}", "CALLBOT_ESL_PASSWORD": "pw",
               "CALLBOT_ESL_PORT": str(switch.esl_port), "CALLBOT_AUDIO_SERVER_PORT": str(audio_port)}
        outputs = []
        for command in commands:
            args = shlex.split(command)
            if args[1:3] == ["campaign", "run"]:  # on the switch's virtual clock, as the dry run says
                args += ["--speed", "5", "--start", START]
            out = subprocess.run([sys.executable, "-m", "callbot", *args[1:]], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=180)
            assert out.returncode == 0, (command, out.stderr[-2000:])
            outputs.append(out.stdout + out.stderr)
    assert "spring: imported 2, on DNC 0" in outputs[2]  # Bob goes on DNC after the import: checked at the claim
    cdr = (tmp_path / "cdr.jsonl").read_text().splitlines()
    assert len(cdr) == 1 and '"+12125550101"' in cdr[0]  # Ann was called, Bob never
    assert "done 1" in outputs[5] and "dnc 1" in outputs[5]
    assert (tmp_path / "attempts.csv").read_text().count("\n") == 2 and list((tmp_path / "charts").glob("*.png"))
