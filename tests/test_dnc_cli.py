"""`callbot dnc add|remove|import|list`: E.164, atomic, and contacts follow the list."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from callbot.app.cli import main
from callbot.robot.store import Contact, make_engine
from test_store_kit import db_url, pg_url, sqlite_url  # noqa: F401 (fixtures)


def cli(args: list[str], url: str):
    return CliRunner().invoke(main, args, env={"CALLBOT_DB_URL": url}, catch_exceptions=False)


def test_add_list_remove(db_url):  # noqa: F811
    added = cli(["dnc", "add", "+1 212 555 0101", "06 12 34 56 78", "--region", "FR", "--json"], db_url)
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout) == {"added": ["+12125550101", "+33612345678"], "already": []}
    again = json.loads(cli(["dnc", "add", "+12125550101", "--json"], db_url).stdout)
    assert again == {"added": [], "already": ["+12125550101"]}
    listed = json.loads(cli(["dnc", "list", "--json"], db_url).stdout)
    assert [(r["number"], r["source"]) for r in listed] == [("+12125550101", "manual"), ("+33612345678", "manual")]
    assert all(r["added_at"].endswith("Z") for r in listed)
    removed = json.loads(cli(["dnc", "remove", "+12125550101", "+12125550199", "--json"], db_url).stdout)
    assert removed == {"removed": ["+12125550101"], "not_listed": ["+12125550199"]}
    assert [r["number"] for r in json.loads(cli(["dnc", "list", "--json"], db_url).stdout)] == ["+33612345678"]


def test_a_bad_number_changes_nothing_and_exits_2(sqlite_url):  # noqa: F811
    result = cli(["dnc", "add", "+12125550101", "not-a-number", "0612345678"], sqlite_url)
    assert result.exit_code == 2 and "'not-a-number'" in result.stderr and "needs --region" in result.stderr
    assert json.loads(cli(["dnc", "list", "--json"], sqlite_url).stdout) == []


def test_import_reports_rows_and_contacts_follow_the_list(sqlite_url, tmp_path):  # noqa: F811
    (tmp_path / "c.csv").write_text("number\n+12125550101\n+12125550102\n")
    cli(["campaign", "create", "c", "--scenario", "survey_en"], sqlite_url)
    cli(["campaign", "import", "c", str(tmp_path / "c.csv")], sqlite_url)
    (tmp_path / "dnc.csv").write_text("number,source\n+12125550101,complaint\nabc,\n+12125550101,\n"
                                      "+12125550103,\n")
    result = cli(["dnc", "import", str(tmp_path / "dnc.csv"), "--json"], sqlite_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"imported": 2, "duplicates": 1, "rejected": [
        {"line": 3, "column": "number", "value": "abc", "reason": "invalid_number"}]}
    listed = {r["number"]: r["source"] for r in json.loads(cli(["dnc", "list", "--json"], sqlite_url).stdout)}
    assert listed == {"+12125550101": "complaint", "+12125550103": "import:dnc.csv"}
    with Session(make_engine(sqlite_url)) as s:
        states = dict(s.execute(select(Contact.number, Contact.state)).all())
    assert states == {"+12125550101": "dnc", "+12125550102": "pending"}  # at once, not only at the next claim
    cli(["dnc", "remove", "+12125550101"], sqlite_url)
    with Session(make_engine(sqlite_url)) as s:
        assert s.scalar(select(Contact.state).where(Contact.number == "+12125550101")) == "pending"
    (tmp_path / "empty.csv").write_bytes(b"")
    assert cli(["dnc", "import", str(tmp_path / "empty.csv")], sqlite_url).exit_code == 2
