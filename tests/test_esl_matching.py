"""ReplyMatcher, the sans-I/O reply and job matching: commands in, parsed messages in, what each one answers out."""

from __future__ import annotations

import pytest

from callbot.esl.matching import Answered, JobDone, Lost, ReplyMatcher, Sent, Unsolicited
from callbot.esl.protocol import EslEvent, Reply

JOB_A = "11111111-1111-4111-8111-111111111111"
JOB_B = "22222222-2222-4222-8222-222222222222"
THEIRS = "33333333-3333-4333-8333-333333333333"


def api_response(body: str) -> Reply:
    return Reply({"Content-Type": "api/response", "Content-Length": str(len(body))}, body.encode())


def command_reply(text: str, **extra: str) -> Reply:
    return Reply({"Content-Type": "command/reply", "Reply-Text": text, **{k.replace("_", "-"): v
                                                                          for k, v in extra.items()}})


def bgapi_ok(job: str) -> Reply:
    return command_reply(f"+OK Job-UUID: {job}", Job_UUID=job)


def job_event(job: str, body: str | None = "+OK done\n") -> EslEvent:
    return EslEvent([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", job), ("Job-Command", "originate")], body)


def test_replies_answer_commands_first_in_first_out_whatever_their_kind():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.command_sent("auth")
    m.api_sent("status")
    m.command_sent("event")
    first = m.receive(command_reply("+OK accepted"))
    second = m.receive(api_response("UP 0 years\n"))
    third = m.receive(command_reply("+OK event listener enabled plain"))
    assert [(a.tag, a.sent) for a in (first, second, third)] == [
        ("auth", Sent.COMMAND), ("status", Sent.API), ("event", Sent.COMMAND)]
    assert all(isinstance(a, Answered) and a.expected_type and not a.abandoned for a in (first, second, third))
    assert second.reply.text == "UP 0 years\n"
    assert m.commands_waiting == 0


def test_a_reply_of_the_other_type_still_answers_the_oldest_command():
    """An ``api`` sent before ``auth`` gets a command/reply: one reply per command, so FIFO holds."""
    m: ReplyMatcher[int] = ReplyMatcher()
    m.api_sent(1)
    m.api_sent(2)
    answered = m.receive(command_reply("-ERR command not found"))
    assert isinstance(answered, Answered) and answered.tag == 1 and not answered.expected_type
    assert m.receive(api_response("ok\n")).tag == 2


def test_reply_with_nothing_waiting_is_unsolicited():
    m: ReplyMatcher[int] = ReplyMatcher()
    reply = api_response("stray\n")
    assert m.receive(reply) == Unsolicited(reply)
    assert m.receive(command_reply("+OK")) == Unsolicited(command_reply("+OK"))


@pytest.mark.parametrize("ctype", ["auth/request", "text/disconnect-notice", "log/data", "text/rude-rejection",
                                   "text/event-plain", ""])
def test_messages_that_are_not_replies_answer_nothing(ctype):
    m: ReplyMatcher[int] = ReplyMatcher()
    m.api_sent(1)
    assert m.receive(Reply({"Content-Type": ctype})) is None
    assert m.commands_waiting == 1


def test_a_timed_out_command_keeps_its_place_so_later_replies_stay_aligned():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.api_sent("slow")
    m.api_sent("status")
    assert m.abandon("slow") and not m.abandon("slow") and not m.abandon("never sent")
    assert m.abandoned_waiting == 1
    late = m.receive(api_response("late\n"))
    assert isinstance(late, Answered) and late.tag == "slow" and late.abandoned
    assert m.abandoned_waiting == 0
    on_time = m.receive(api_response("UP\n"))
    assert on_time.tag == "status" and not on_time.abandoned and on_time.reply.text == "UP\n"


def test_abandoned_count_says_how_many_commands_wait_in_vain():
    m: ReplyMatcher[int] = ReplyMatcher()
    for tag in range(4):
        m.api_sent(tag)
    for tag in range(3):
        m.abandon(tag)
    assert (m.commands_waiting, m.abandoned_waiting) == (4, 3)
    m.receive(api_response("x"))
    assert (m.commands_waiting, m.abandoned_waiting) == (3, 2)


def test_bgapi_reply_then_job_event_completes_the_job_tag():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("reply", JOB_A, "job")
    assert m.jobs_waiting == 1 and m.job_uuid("job") == JOB_A
    answered = m.receive(bgapi_ok(JOB_A))
    assert isinstance(answered, Answered) and answered.tag == "reply" and answered.sent is Sent.BGAPI
    assert answered.job_uuid == JOB_A and m.jobs_waiting == 1
    assert m.receive(job_event(JOB_A)) == JobDone("job", JOB_A, "+OK done\n")
    assert m.jobs_waiting == 0 and m.job_uuid("job") is None
    assert m.receive(job_event(JOB_A)) is None  # a duplicate is just an event


def test_jobs_complete_by_job_uuid_in_any_order():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("r1", JOB_A, "j1")
    m.bgapi_sent("r2", JOB_B, "j2")
    m.receive(bgapi_ok(JOB_A))
    m.receive(bgapi_ok(JOB_B))
    assert m.receive(job_event(JOB_B, "-ERR NO_ANSWER\n")) == JobDone("j2", JOB_B, "-ERR NO_ANSWER\n")
    assert m.receive(job_event(JOB_A, None)) == JobDone("j1", JOB_A, "")


def test_other_events_and_other_clients_jobs_answer_nothing():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("r", JOB_A, "j")
    m.receive(bgapi_ok(JOB_A))
    assert m.receive(job_event(JOB_B)) is None
    assert m.receive(EslEvent([("Event-Name", "CHANNEL_ANSWER"), ("Job-UUID", JOB_A)])) is None
    assert m.receive(EslEvent([("Event-Name", "BACKGROUND_JOB")])) is None
    assert m.jobs_waiting == 1


def test_refused_bgapi_drops_its_job():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("r", JOB_A, "j")
    answered = m.receive(command_reply("-ERR command not found"))
    assert answered.tag == "r" and answered.job_uuid is None
    assert m.jobs_waiting == 0 and m.receive(job_event(JOB_A)) is None


def test_switch_that_chose_its_own_job_uuid_is_followed():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("r", JOB_A, "j")
    assert m.receive(bgapi_ok(THEIRS)).job_uuid == THEIRS
    assert m.job_uuid("j") == THEIRS
    assert m.receive(job_event(JOB_A)) is None
    assert m.receive(job_event(THEIRS)) == JobDone("j", THEIRS, "+OK done\n")


def test_echo_of_an_id_another_job_waits_on_keeps_ours():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("r1", JOB_A, "j1")
    m.bgapi_sent("r2", JOB_B, "j2")
    m.receive(bgapi_ok(JOB_A))
    assert m.receive(bgapi_ok(JOB_A)).job_uuid == JOB_B
    assert m.receive(job_event(JOB_B)).tag == "j2"


def test_ok_without_job_uuid_header_keeps_ours():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("r", JOB_A, "j")
    assert m.receive(command_reply("+OK Job-UUID: whatever")).job_uuid == JOB_A


def test_abandoned_bgapi_forgets_its_job():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("r", JOB_A, "j")
    m.abandon("r")
    assert m.jobs_waiting == 0
    late = m.receive(bgapi_ok(JOB_A))
    assert late.abandoned and late.job_uuid is None
    assert m.receive(job_event(JOB_A)) is None


def test_forgotten_job_is_just_an_event_when_it_comes():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("r", JOB_A, "j")
    m.receive(bgapi_ok(JOB_A))
    assert m.forget_job("j") and not m.forget_job("j")
    assert m.receive(job_event(JOB_A)) is None


def test_job_forgotten_before_its_reply_stays_forgotten():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("r", JOB_A, "j")
    m.forget_job("j")
    assert m.receive(bgapi_ok(THEIRS)).job_uuid is None
    assert m.receive(job_event(THEIRS)) is None


def test_job_event_before_the_bgapi_reply_still_completes():
    """Not what FreeSWITCH does (the reply is flushed first), but defined: the job waits from the send."""
    m: ReplyMatcher[str] = ReplyMatcher()
    m.bgapi_sent("r", JOB_A, "j")
    assert m.receive(job_event(JOB_A)) == JobDone("j", JOB_A, "+OK done\n")
    answered = m.receive(bgapi_ok(JOB_A))
    assert answered.tag == "r" and answered.job_uuid is None


def test_connection_lost_lists_what_waits_and_empties_the_matcher():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.api_sent("a")
    m.api_sent("timed-out")
    m.bgapi_sent("r", JOB_A, "j")
    m.bgapi_sent("r2", JOB_B, "j2")
    m.abandon("timed-out")
    m.receive(api_response("x"))
    m.receive(api_response("late"))
    m.receive(bgapi_ok(JOB_A))
    assert m.connection_lost() == Lost(commands=["r2"], jobs=["j", "j2"])
    assert (m.commands_waiting, m.jobs_waiting, m.abandoned_waiting) == (0, 0, 0)
    assert isinstance(m.receive(api_response("after")), Unsolicited)
    assert m.receive(job_event(JOB_A)) is None
    m.bgapi_sent("r", JOB_A, "j")  # ids and tags may be used again on the next connection


def test_tags_and_job_ids_must_be_fresh():
    m: ReplyMatcher[str] = ReplyMatcher()
    m.api_sent("t")
    with pytest.raises(ValueError, match="already waiting"):
        m.command_sent("t")
    m.bgapi_sent("r", JOB_A, "j")
    with pytest.raises(ValueError, match="fresh Job-UUID"):
        m.bgapi_sent("r2", JOB_A, "j2")
    with pytest.raises(ValueError, match="fresh Job-UUID"):
        m.bgapi_sent("r3", JOB_B, "j")
    with pytest.raises(ValueError, match="fresh Job-UUID"):
        m.bgapi_sent("r4", "", "j4")
    assert m.commands_waiting == 2 and m.jobs_waiting == 1


def test_sent_kinds_name_the_reply_they_expect():
    assert Sent.API.reply_type == "api/response"
    assert Sent.BGAPI.reply_type == Sent.COMMAND.reply_type == "command/reply"
