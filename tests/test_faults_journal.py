"""Fault suite, the journal shared by two processes: one replays while the other still appends.

Two runs on one host share `[campaign] journal_dir` (two `campaign run`s, or a `campaign run` and
a `callbot call`, which replays the journal before every dial). A replay must never take a file
that its owner is still writing: records appended after the take would be deleted with it. The
owner holds a `flock` on its current file; a replay takes only files whose lock it gets.
"""

from __future__ import annotations

import subprocess
import sys
import time

from callbot.robot.store.journal import Journal


def _seqs(lines: list[str]) -> list[int]:
    return [int(line.split('"seq":')[1].split(",")[0]) for line in lines]


def test_fault_a_replay_never_takes_a_file_its_owner_is_still_writing(tmp_path):
    finished = Journal(tmp_path)  # a run that has closed its file: a replay takes that one
    finished.append({"kind": "event", "call_uuid": "u", "seq": 0, "row": {}})
    finished.close()
    writer, replayer = Journal(tmp_path), Journal(tmp_path)  # two processes' journals in one directory
    writer.append({"kind": "event", "call_uuid": "u", "seq": 1, "row": {}})
    applied: list[dict] = []

    def apply(records: list[dict]) -> None:
        applied.extend(records)
        writer.append({"kind": "event", "call_uuid": "u", "seq": 2, "row": {}})  # the owner writes on meanwhile

    replayer.replay(apply)
    assert [r["seq"] for r in applied] == [0], "the replay took the live file, or not the finished one"
    assert replayer.pending() == [], "a file its owner still writes is not pending"
    writer.close()
    left = [line for path in tmp_path.glob("journal-*") for line in path.read_text().splitlines()]
    seqs = sorted([r["seq"] for r in applied] + _seqs(left))
    assert seqs == [0, 1, 2], f"applied {applied}, left in the journal {left}"
    replayer.replay(applied.extend)  # closed now: the next replay takes it
    assert sorted(r["seq"] for r in applied) == [0, 1, 2] and not list(tmp_path.glob("journal-*"))


WRITER = """
import sys, time
from callbot.robot.store.journal import Journal
journal = Journal(sys.argv[1])
print("ready", flush=True)
for seq in range(int(sys.argv[2])):
    journal.append({"kind": "event", "call_uuid": "u", "seq": seq, "row": {}})
    if seq % 50 == 49:
        journal.rotate()  # a finished file now and then, for the replays to take
    time.sleep(0.001)
journal.close()
"""


def test_fault_a_replay_in_another_process_loses_nothing_its_writer_appends(tmp_path):
    count = 400
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(count)], stdout=subprocess.PIPE,
                              text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    replayer, applied, replays = Journal(tmp_path), [], 0
    deadline = time.monotonic() + 30
    while writer.poll() is None and time.monotonic() < deadline:
        replays += bool(replayer.replay(applied.extend).files)
        time.sleep(0.002)
    assert writer.wait(5) == 0
    replayer.replay(applied.extend)  # what the writer closed last
    seqs = sorted(r["seq"] for r in applied)
    assert seqs == list(range(count)), f"lost {sorted(set(range(count)) - set(seqs))}, twice {len(seqs) - len(set(seqs))}"
    assert replays >= 2, "the replays never ran beside the writer"
    assert not list(tmp_path.glob("journal-*")) and not list(tmp_path.glob(".journal-*"))
