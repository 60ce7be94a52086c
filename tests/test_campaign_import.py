"""`campaign create` and `campaign import`: per-row rejections with line/column/value/reason, atomic writes,
duplicates, DNC, E.164 and IANA zones; unreadable files and bad settings exit 2 and change nothing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callbot.app.cli import main
from callbot.robot.campaign.importer import UnreadableFile, read_contacts
from callbot.robot.store import Contact, make_engine
from test_store_kit import db_url, pg_url, sqlite_url  # noqa: F401 (fixtures)

GOOD = """number,tz,name,language,plan
+1 212 555 0101,,Ann,en,gold
0612345678,Europe/Paris,"Zoé, Jr.",fr,
+15555550123,,bad number,,
+12125550101,,dup of line 2,,
+33612345679,Mars/Base,,,
,,no number,,
"+1 415
555 0102",,multi-line quoted,,
+80012345678,,no zone anywhere,,
+12125550103,,,english,
+12125550104,,on dnc,,
"""


def cli(args: list[str], url: str):
    return CliRunner().invoke(main, args, env={"CALLBOT_DB_URL": url}, catch_exceptions=False)


def _contacts(url: str) -> dict[str, Contact]:
    with Session(make_engine(url)) as s:
        return {c.number: c for c in s.scalars(select(Contact))}


def test_import_reports_each_bad_row_and_commits_the_good_ones(db_url, tmp_path):  # noqa: F811
    path = tmp_path / "contacts.csv"
    path.write_text(GOOD, encoding="utf-8")
    assert cli(["campaign", "create", "spring", "--scenario", "survey_en"], db_url).exit_code == 0
    assert cli(["dnc", "add", "+12125550104"], db_url).exit_code == 0
    result = cli(["campaign", "import", "spring", str(path), "--region", "FR", "--json"], db_url)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["imported"], doc["dnc"], doc["duplicates"]) == (3, 1, 1)
    assert doc["rejected"] == [
        {"line": 4, "column": "number", "value": "+15555550123", "reason": "invalid_number"},
        {"line": 6, "column": "tz", "value": "Mars/Base", "reason": "unknown_tz"},
        {"line": 7, "column": "number", "value": "", "reason": "missing_value"},
        {"line": 10, "column": "number", "value": "+80012345678", "reason": "no_timezone"},
        {"line": 11, "column": "language", "value": "english", "reason": "bad_value"},
    ]
    contacts = _contacts(db_url)
    ann = contacts["+12125550101"]
    assert (ann.name, ann.language, ann.zones, ann.attributes, ann.line) == \
        ("Ann", "en", ["America/New_York"], {"plan": "gold"}, 2)
    assert contacts["+33612345678"].tz == "Europe/Paris" and contacts["+33612345678"].name == "Zoé, Jr."
    assert contacts["+14155550102"].line == 8  # a quoted field over two lines: the row's first line
    assert contacts["+80012345678"].state == "invalid" and contacts["+80012345678"].reason == "no_timezone"
    assert contacts["+12125550104"].state == "dnc"
    again = json.loads(cli(["campaign", "import", "spring", str(path), "--region", "FR", "--json"], db_url).stdout)
    assert (again["imported"], again["duplicates"]) == (0, 6)  # every valid number is already there


def test_a_default_tz_gives_zoneless_numbers_a_zone(sqlite_url, tmp_path):  # noqa: F811
    (tmp_path / "s.toml").write_text('[campaign]\ndefault_tz = "UTC"\n')
    (tmp_path / "c.csv").write_text("number\n+80012345678\n")
    assert cli(["campaign", "create", "c", "--scenario", "survey_en", "--settings", str(tmp_path / "s.toml")],
               sqlite_url).exit_code == 0
    doc = json.loads(cli(["campaign", "import", "c", str(tmp_path / "c.csv"), "--json"], sqlite_url).stdout)
    assert (doc["imported"], doc["rejected"]) == (1, [])


@pytest.mark.parametrize("content, words", [
    (b"", "is empty"),
    (b"   \n\n", "is empty"),
    (b"phone,tz\n+12125550101,\n", "no 'number' column"),
    (b"number,Number\n1,2\n", "more than once"),
    ("number,name\n+12125550101,Zo\u00e9\n".encode("latin-1"), "not UTF-8 (byte 0xe9 on line 2)"),
    (b"\xff\xfen\x00u\x00m\x00", "not UTF-8"),
])
def test_a_file_that_cannot_be_read_imports_nothing_and_exits_2(sqlite_url, tmp_path, content, words):  # noqa: F811
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    cli(["campaign", "create", "c", "--scenario", "survey_en"], sqlite_url)
    result = cli(["campaign", "import", "c", str(path), "--json"], sqlite_url)
    assert result.exit_code == 2 and words in result.stderr and result.stdout == ""
    assert _contacts(sqlite_url) == {}


def test_usage_errors_exit_2_with_the_fix(sqlite_url, tmp_path):  # noqa: F811
    (tmp_path / "c.csv").write_text("number\n+12125550101\n")
    result = cli(["campaign", "import", "nope", str(tmp_path / "c.csv")], sqlite_url)
    assert result.exit_code == 2 and "callbot campaign create nope" in result.stderr
    cli(["campaign", "create", "c", "--scenario", "survey_en"], sqlite_url)
    assert cli(["campaign", "import", "c", str(tmp_path / "c.csv"), "--region", "ZZ"], sqlite_url).exit_code == 2
    assert cli(["campaign", "import", "c", str(tmp_path / "none.csv")], sqlite_url).exit_code == 2
    dup = cli(["campaign", "create", "c", "--scenario", "survey_en"], sqlite_url)
    assert dup.exit_code == 2 and "already exists" in dup.stderr
    assert cli(["campaign", "create", "d", "--scenario", "no_such"], sqlite_url).exit_code == 2


@pytest.mark.parametrize("toml, words", [
    ("[campaign]\nring_timeout_s = 5\n", "campaign.ring_timeout_s: 5.0 must be >= 15"),
    ("[campaign]\nwindows = [\"weekdays 9-5\"]\n", "campaign.windows: ('weekdays 9-5',) must be calling windows: window 'weekdays 9-5'"),
    ("[campaign]\nretry_after = { busy = -1 }\n", "campaign.retry_after.busy: -1.0 must be seconds"),
    ("[campaign]\nmax_concurent = 3\n", "unknown setting campaign.max_concurent"),
    ("[campaign]\ncalls_per_second = \"fast\"\n", "campaign.calls_per_second: 'fast' is not a valid float"),
    ("[esl]\nport = 1\n", "only a [campaign] table"),
    ("[campaign\n", "not valid TOML"),
])
def test_a_settings_file_with_bad_values_names_the_setting(sqlite_url, tmp_path, toml, words):  # noqa: F811
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    result = cli(["campaign", "create", "c", "--scenario", "survey_en", "--settings", str(path)], sqlite_url)
    assert result.exit_code == 2 and words in result.stderr and str(path) in result.stderr
    from callbot.robot.store import Campaign, ensure_schema

    engine = make_engine(sqlite_url)
    ensure_schema(engine)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0


def test_reading_a_big_file_is_linear_and_line_numbers_survive_blank_lines():
    rows = "\n".join(f"+1212555{i:04d}" for i in range(1000, 3000))
    parsed = read_contacts(f"number\n\n{rows}\n".encode(), "big.csv", None, None)
    assert len(parsed.rows) == 2000 and parsed.rows[0].line == 3 and parsed.rows[-1].line == 2002
    with pytest.raises(UnreadableFile, match="big.csv"):
        read_contacts(b"name\nx\n", "big.csv", None, None)


def test_unreachable_or_locked_databases_exit_1_with_a_clear_line(tmp_path):
    result = cli(["campaign", "status", "c"], f"sqlite:///{tmp_path}/no/such/dir/x.db")
    assert result.exit_code == 1 and "check that its directory exists" in result.stderr
    result = cli(["dnc", "list"], "postgresql+psycopg://u:secret@127.0.0.1:1/x?connect_timeout=2")
    assert result.exit_code == 1 and "cannot be reached" in result.stderr and "secret" not in result.stderr
