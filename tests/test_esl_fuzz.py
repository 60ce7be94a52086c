"""Hypothesis fuzz tests of the sans-I/O ESL core: the parser, event decoding and the reply/job matcher.

What must hold for any input: the parser raises EslProtocolError and nothing else, keeps at most
its limits buffered, and frames the same messages however the stream is split; event decoding
raises EslProtocolError and nothing else; the matcher answers every reply with the command a
FIFO switch would be answering, and every job with its own bgapi, whatever the client gave up on.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from callbot.esl.matching import Answered, JobDone, Lost, ReplyMatcher, Unsolicited
from callbot.esl.protocol import (
    EslEvent, EslParser, EslProtocolError, Reply, frame_event, parse_event, serialize_event, to_reply,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- the parser -----------------------------------------------------------------------------

header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True).filter(
    lambda n: n.lower() != "content-length")
header_values = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]),
                        max_size=40).map(str.strip)


@st.composite
def messages(draw) -> tuple[list[tuple[str, str]], bytes]:
    """One switch-to-client message: header pairs and a body (which may hold anything, newlines too)."""
    headers = draw(st.lists(st.tuples(header_names, header_values), min_size=1, max_size=6))
    body = draw(st.binary(max_size=300) | st.just(b""))
    return headers, body


def frame(headers: list[tuple[str, str]], body: bytes, blank_lines: bytes = b"", crlf: bool = False) -> bytes:
    lines = [f"{n}: {v}" for n, v in headers] + ([f"Content-Length: {len(body)}"] if body else [])
    end = "\r\n" if crlf else "\n"
    return blank_lines + (end.join(lines) + end + end).encode() + body


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


@settings(FUZZ, max_examples=80)
@given(st.lists(st.tuples(messages(), st.sampled_from([b"", b"\n", b"\r\n\r\n"]), st.booleans()), min_size=1,
                max_size=5),
       st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_any_split_frames_the_same_messages(batch, cuts):
    data = b"".join(frame(h, b, blank, crlf) for (h, b), blank, crlf in batch)
    whole = EslParser().feed(data)
    parser = EslParser()
    pieces = [m for piece in split(data, cuts) for m in parser.feed(piece)]
    assert parser.pending == 0
    assert [(m.lines, m.body) for m in pieces] == [(m.lines, m.body) for m in whole]
    assert len(whole) == len(batch)
    for raw, ((headers, body), _, _) in zip(whole, batch):
        assert raw.body == body
        assert raw.header_pairs()[:len(headers)] == [(n, v) for n, v in headers]


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3000), max_size=40), st.booleans())
def test_arbitrary_bytes_raise_only_protocol_errors_and_stay_within_the_limits(data, cuts, skip):
    parser = EslParser(max_body=200, max_header=300, skip_oversize_body=skip)
    try:
        for piece in split(data, cuts):
            for raw in parser.feed(piece):
                assert len(raw.body) <= 200 and (raw.skipped == 0 or (raw.skipped > 200 and raw.body == b""))
                to_reply(raw)
            assert parser.pending <= 300  # a header block (max_header) or a body still short (max_body)
    except EslProtocolError:
        pass


@FUZZ
@given(st.lists(st.sampled_from([b"Content-Length: 5\n\nhello", b"Content-Type: x\n\n", b"\n", b"\r", b"a",
                                 b": ", b"Content-Length: ", b"9", b"\n\n", b"Content-Length: 999\n\n",
                                 b"\xff\xfe", b"%", b"Content-Length: -1\n\n", b"Content-Length: 1e3\n\n"]),
                max_size=60),
       st.lists(st.integers(min_value=0, max_value=600), max_size=20))
def test_wire_like_garbage_raises_only_protocol_errors(tokens, cuts):
    data = b"".join(tokens)
    for skip in (False, True):
        parser = EslParser(max_body=100, max_header=200, skip_oversize_body=skip)
        try:
            for piece in split(data, cuts):
                parser.feed(piece)
        except EslProtocolError:
            pass


def test_oversize_body_is_skipped_in_step_without_being_buffered():
    parser = EslParser(max_body=10, skip_oversize_body=True)
    data = b"Content-Type: api/response\nContent-Length: 1000\n\n" + b"x" * 1000 + b"Content-Type: command/reply\n\n"
    out = []
    for i in range(0, len(data), 7):
        out += parser.feed(data[i:i + 7])
        assert parser.pending <= 64
    assert [(m.lines[0], m.skipped, m.body) for m in out] == [("Content-Type: api/response", 1000, b""),
                                                             ("Content-Type: command/reply", 0, b"")]
    assert to_reply(out[0]).skipped == 1000
    with pytest.raises(EslProtocolError, match="over the 10-byte limit"):
        EslParser(max_body=10).feed(b"Content-Length: 11\n\n")


@pytest.mark.parametrize("value", ["abc", "+5", "5_0", "\u0665", "-1", "1e3", "", "0x10", "1" * 16])
def test_content_length_must_be_plain_decimal(value):
    with pytest.raises(EslProtocolError, match="bad Content-Length"):
        EslParser().feed(f"Content-Type: api/response\nContent-Length: {value}\n\n".encode())


def test_cr_is_ignored_everywhere_in_a_header_block():
    """mod_event_socket drops every ``\\r``: ``\\n\\r\\n`` ends a block as ``\\n\\n`` does."""
    out = EslParser().feed(b"\r\napi st\ratus\r\n\r\nfilter a b\n\r\n")
    assert [m.lines for m in out] == [["api status"], ["filter a b"]]


def test_one_byte_feeds_are_linear():
    """Issue 11: 65,536 one-byte feeds of a header block took 2.8 s (the scan restarted each feed)."""
    line = b"X-Filler: " + b"v" * 30 + b"\n"
    block = b"Content-Type: command/reply\n" + line * ((65536 - 64) // len(line)) + b"\n"
    parser = EslParser()
    start = time.perf_counter()
    out = []
    for i in range(len(block)):
        out += parser.feed(block[i:i + 1])
    elapsed = time.perf_counter() - start
    assert len(out) == 1 and len(out[0].lines) > 1500
    assert elapsed < 1.5, f"{len(block)} one-byte feeds took {elapsed:.2f} s"


# ---- event decoding -------------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(["text/event-plain", "text/event-json"]))
def test_event_decoding_raises_only_protocol_errors(payload, ctype):
    try:
        event = parse_event(Reply({"Content-Type": ctype}, payload))
    except EslProtocolError:
        return
    assert event.name and all(isinstance(n, str) and isinstance(v, str) for n, v in event.headers)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=10)


@FUZZ
@given(json_values)
def test_event_json_that_is_not_an_event_object_is_a_protocol_error_or_an_event(value):
    payload = json.dumps(value).encode()
    try:
        event = parse_event(Reply({"Content-Type": "text/event-json"}, payload))
    except EslProtocolError:
        return
    assert isinstance(value, dict) and event.name


@pytest.mark.parametrize("ctype,payload,why", [
    ("text/event-plain", b"Event-Name: CUSTOM\nContent-Length: abc\n\nbody", "bad Content-Length"),
    ("text/event-plain", b"Event-Name: CUSTOM\nContent-Length: 99\n\nshort", "its Content-Length says 99"),
    ("text/event-plain", b"Unique-ID: x\n\n", "without Event-Name"),
    ("text/event-json", b"[1, 2]", "not an object"),
    ("text/event-json", b'"CHANNEL_ANSWER"', "not an object"),
    ("text/event-json", b'{"Event-Name": "CUSTOM", "_body": {"a": 1}}', "not a string"),
    ("text/event-json", b"{not json", "not JSON"),
    ("text/event-json", b"[" * 100000 + b"]" * 100000, "not JSON"),
    ("text/event-xml", b"<event/>", "not an event"),
])
def test_malformed_events_are_protocol_errors(ctype, payload, why):
    with pytest.raises(EslProtocolError, match=why):
        parse_event(Reply({"Content-Type": ctype}, payload))


def test_bad_utf8_is_replaced_not_fatal():
    event = parse_event(Reply({"Content-Type": "text/event-plain"},
                              b"Event-Name: CHANNEL_HANGUP\nCaller-Caller-ID-Name: Caf%E9\nX-Raw: \xff\n\n"))
    assert event["Caller-Caller-ID-Name"] == "Caf\ufffd" and event["X-Raw"] == "\ufffd"
    event = parse_event(Reply({"Content-Type": "text/event-json"}, b'{"Event-Name": "CUSTOM", "_body": "\xff"}'))
    assert event.body == "\ufffd"


safe_values = st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=30).filter(
    lambda v: v == v.strip() and "%" not in v)


@FUZZ
@given(st.dictionaries(header_names.filter(lambda n: n != "Event-Name"), safe_values, max_size=8),
       st.none() | st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200),
       st.sampled_from(["plain", "json"]))
def test_serialised_events_decode_to_themselves(headers, body, fmt):
    event = EslEvent([("Event-Name", "CUSTOM")] + list(headers.items()), body)
    message = frame_event(serialize_event(event, fmt), fmt)
    (raw,) = EslParser().feed(message)
    decoded = parse_event(to_reply(raw))
    assert decoded.headers == event.headers and decoded.body == event.body


# ---- the matcher, against a model of a FIFO switch ------------------------------------------

class MatcherAgainstASwitch(RuleBasedStateMachine):
    """Random sends, replies, jobs, timeouts and drops; the model says what each message must answer."""

    @initialize()
    def start(self) -> None:
        self.matcher: ReplyMatcher[int] = ReplyMatcher()
        self.next_tag = 0
        self.switch_queue: list[dict] = []  # what the switch got and has not answered, in order
        self.switch_jobs: dict[str, int] = {}  # job ids the switch accepted -> job tag
        self.client_jobs: dict[int, str] = {}  # job tags the client waits for -> the id it waits under
        self.abandoned: set[int] = set()

    def _tag(self) -> int:
        self.next_tag += 1
        return self.next_tag

    def _job_id(self) -> str:
        """A job uuid from the run's own counter: random ones would make hypothesis's replays differ."""
        return f"00000000-0000-4000-8000-{self._tag():012d}"

    @rule(kind=st.sampled_from(["api", "command"]))
    def send(self, kind: str) -> None:
        tag = self._tag()
        (self.matcher.api_sent if kind == "api" else self.matcher.command_sent)(tag)
        self.switch_queue.append({"tag": tag, "kind": kind})

    @rule(answer=st.sampled_from(["ours", "theirs", "refused"]))
    def send_bgapi(self, answer: str) -> None:
        tag, job_tag, job = self._tag(), self._tag(), self._job_id()
        self.matcher.bgapi_sent(tag, job, job_tag)
        self.client_jobs[job_tag] = job
        self.switch_queue.append({"tag": tag, "kind": "bgapi", "job": job, "job_tag": job_tag, "answer": answer})

    @precondition(lambda self: self.switch_queue)
    @rule()
    def switch_answers_the_oldest(self) -> None:
        sent = self.switch_queue.pop(0)
        if sent["kind"] == "api":
            reply = Reply({"Content-Type": "api/response"}, b"+OK\n")
        elif sent["kind"] == "command":
            reply = Reply({"Content-Type": "command/reply", "Reply-Text": "+OK"})
        elif sent["answer"] == "refused":
            reply = Reply({"Content-Type": "command/reply", "Reply-Text": "-ERR no"})
        else:
            echo = sent["job"] if sent["answer"] == "ours" else self._job_id()
            reply = Reply({"Content-Type": "command/reply", "Reply-Text": f"+OK Job-UUID: {echo}", "Job-UUID": echo})
            self.switch_jobs[echo] = sent["job_tag"]
        outcome = self.matcher.receive(reply)
        assert isinstance(outcome, Answered) and outcome.tag == sent["tag"] and outcome.reply is reply
        assert outcome.abandoned == (sent["tag"] in self.abandoned)
        self.abandoned.discard(sent["tag"])
        if sent["kind"] != "bgapi":
            assert outcome.job_uuid is None
            return
        job_tag = sent["job_tag"]
        if sent["answer"] == "refused" or job_tag not in self.client_jobs:
            self.client_jobs.pop(job_tag, None)
            assert outcome.job_uuid is None
        else:
            echo = reply.headers["Job-UUID"]
            self.client_jobs[job_tag] = echo
            assert outcome.job_uuid == echo

    @precondition(lambda self: not self.switch_queue)
    @rule()
    def switch_sends_a_stray_reply(self) -> None:
        assert isinstance(self.matcher.receive(Reply({"Content-Type": "api/response"}, b"?")), Unsolicited)

    @precondition(lambda self: self.switch_jobs)
    @rule(data=st.data())
    def switch_finishes_a_job(self, data) -> None:
        job = data.draw(st.sampled_from(sorted(self.switch_jobs)))
        job_tag = self.switch_jobs.pop(job)
        event = EslEvent([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", job)], f"+OK {job}\n")
        outcome = self.matcher.receive(event)
        if self.client_jobs.get(job_tag) == job:
            assert outcome == JobDone(job_tag, job, f"+OK {job}\n")
            del self.client_jobs[job_tag]
        else:
            assert outcome is None

    @rule(name=st.sampled_from(["BACKGROUND_JOB", "CHANNEL_ANSWER", "CUSTOM"]))
    def switch_sends_someone_elses_event(self, name: str) -> None:
        assert self.matcher.receive(EslEvent([("Event-Name", name), ("Job-UUID", self._job_id())])) is None

    @precondition(lambda self: any(s["tag"] not in self.abandoned for s in self.switch_queue))
    @rule(data=st.data())
    def client_times_out_a_command(self, data) -> None:
        sent = data.draw(st.sampled_from([s for s in self.switch_queue if s["tag"] not in self.abandoned]))
        assert self.matcher.abandon(sent["tag"])
        self.abandoned.add(sent["tag"])
        if sent["kind"] == "bgapi":
            self.client_jobs.pop(sent["job_tag"], None)

    @precondition(lambda self: self.client_jobs)
    @rule(data=st.data())
    def client_times_out_a_job(self, data) -> None:
        job_tag = data.draw(st.sampled_from(sorted(self.client_jobs)))
        assert self.matcher.forget_job(job_tag)
        del self.client_jobs[job_tag]

    @rule()
    def connection_drops(self) -> None:
        lost = self.matcher.connection_lost()
        assert lost == Lost([s["tag"] for s in self.switch_queue if s["tag"] not in self.abandoned],
                            list(self.client_jobs))
        self.switch_queue, self.switch_jobs, self.client_jobs, self.abandoned = [], {}, {}, set()

    @invariant()
    def counts_agree(self) -> None:
        if not hasattr(self, "matcher"):
            return
        assert self.matcher.commands_waiting == len(self.switch_queue)
        assert self.matcher.abandoned_waiting == len(self.abandoned)
        assert self.matcher.jobs_waiting == len(self.client_jobs)
        for job_tag, job in self.client_jobs.items():
            assert self.matcher.job_uuid(job_tag) == job


MatcherAgainstASwitch.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_matcher_against_a_fifo_switch = MatcherAgainstASwitch.TestCase
