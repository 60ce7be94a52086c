"""The dialer's rules with a fake clock: windows in local time across DST, several zones, outcomes, retries, pacing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from callbot.config import CampaignSettings
from callbot.robot.campaign.numbers import number_zones, resolve_zones, to_e164
from callbot.robot.campaign.rules import (
    CallSummary, Dial, Final, Later, after_attempt, capacity, is_abandoned, outcome_of, pace, summarize, triage,
)
from callbot.windows import WindowError, is_open, next_open, parse_windows

UTC = timezone.utc
NY, LA, PARIS = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles"), ZoneInfo("Europe/Paris")
WEEKDAYS = parse_windows(["mon-fri 09:00-20:00", "sat 10:00-18:00"])
EVERY_DAY = parse_windows(["mon-sun 09:00-20:00"])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---- windows ----------------------------------------------------------------------------------

def test_window_specs_and_their_errors():
    (w,) = parse_windows(["fri-mon 08:30-24:00"])
    assert w.days == {4, 5, 6, 0} and (w.start_min, w.end_min) == (510, 1440)
    assert parse_windows(["mon,wed 09:00-10:00"])[0].days == {0, 2}
    assert parse_windows(["mon-sun 00:00-24:00"])[0].days == set(range(7))
    for bad, words in [("weekdays 09:00-20:00", "not a day"), ("mon-fri 20:00-09:00", "after the start"),
                       ("mon-fri 9-20", "not like"), ("mon 25:00-26:00", "not a time of day")]:
        with pytest.raises(WindowError, match=words):
            parse_windows([bad])
    with pytest.raises(WindowError, match="list of strings"):
        parse_windows("mon-fri 09:00-20:00")


def test_open_and_next_open_in_the_callees_local_time():
    monday_8am_ny = utc(2024, 6, 3, 12, 0)  # EDT = UTC-4
    assert not is_open(WEEKDAYS, monday_8am_ny, [NY])
    assert next_open(WEEKDAYS, monday_8am_ny, [NY]) == utc(2024, 6, 3, 13, 0)
    assert is_open(WEEKDAYS, monday_8am_ny, [PARIS])  # 14:00 in Paris
    friday_9pm_ny = utc(2024, 6, 8, 1, 0)
    assert next_open(WEEKDAYS, friday_9pm_ny, [NY]) == utc(2024, 6, 8, 14, 0)  # Saturday 10:00
    saturday_7pm_ny = utc(2024, 6, 8, 23, 0)
    assert next_open(WEEKDAYS, saturday_7pm_ny, [NY]) == utc(2024, 6, 10, 13, 0)  # no Sunday window: Monday


def test_dst_spring_forward_opens_at_nine_local_on_both_sides():
    # New York moves from UTC-5 to UTC-4 on Sunday 2024-03-10 at 02:00 local
    assert next_open(EVERY_DAY, utc(2024, 3, 9, 5, 0), [NY]) == utc(2024, 3, 9, 14, 0)  # 09:00 EST
    assert next_open(EVERY_DAY, utc(2024, 3, 10, 5, 0), [NY]) == utc(2024, 3, 10, 13, 0)  # 09:00 EDT
    assert not is_open(EVERY_DAY, utc(2024, 3, 10, 12, 59), [NY])
    assert is_open(EVERY_DAY, utc(2024, 3, 10, 13, 0), [NY])
    # a window that starts inside the skipped hour opens when the clocks jump (03:00 EDT)
    gap = parse_windows(["sun 02:30-04:00"])
    assert next_open(gap, utc(2024, 3, 10, 5, 0), [NY]) == utc(2024, 3, 10, 7, 0)


def test_dst_fall_back_and_a_window_at_the_repeated_hour():
    # New York goes from UTC-4 back to UTC-5 on Sunday 2024-11-03 at 02:00 local
    assert next_open(EVERY_DAY, utc(2024, 11, 3, 5, 0), [NY]) == utc(2024, 11, 3, 14, 0)
    assert next_open(EVERY_DAY, utc(2024, 11, 2, 5, 0), [NY]) == utc(2024, 11, 2, 13, 0)
    early = parse_windows(["sun 01:00-01:45"])  # 01:00-01:45 happens twice that night: the first counts
    assert next_open(early, utc(2024, 11, 3, 0, 0), [NY]) == utc(2024, 11, 3, 5, 0)
    assert is_open(early, utc(2024, 11, 3, 6, 10), [NY])  # the repeat is inside the window too
    # Paris changes a week earlier than New York: a Paris callee's window moves, the NY one does not
    assert next_open(EVERY_DAY, utc(2024, 10, 27, 0, 0), [PARIS]) == utc(2024, 10, 27, 8, 0)  # CET
    assert next_open(EVERY_DAY, utc(2024, 10, 26, 0, 0), [PARIS]) == utc(2024, 10, 26, 7, 0)  # CEST


def test_a_number_with_several_zones_is_open_only_when_all_of_them_are():
    both = [NY, LA]
    monday_9am_ny = utc(2024, 6, 3, 13, 0)  # 06:00 in Los Angeles
    assert is_open(EVERY_DAY, monday_9am_ny, [NY]) and not is_open(EVERY_DAY, monday_9am_ny, both)
    assert next_open(EVERY_DAY, monday_9am_ny, both) == utc(2024, 6, 3, 16, 0)  # 09:00 in LA
    assert is_open(EVERY_DAY, utc(2024, 6, 3, 23, 59), both)  # 19:59 NY
    assert next_open(EVERY_DAY, utc(2024, 6, 4, 0, 0), both) == utc(2024, 6, 4, 16, 0)  # 20:00 NY closes it


def test_real_numbers_and_their_zones():
    assert number_zones(to_e164("+1 212 555 0123")) == ("America/New_York",)
    assert number_zones(to_e164("06 12 34 56 78", "FR")) == ("Europe/Paris",)
    toll_free = number_zones(to_e164("+1 800 555 0199"))  # 40-odd zones from Guam to St John's
    assert {"Pacific/Guam", "Pacific/Honolulu", "America/St_Johns"} <= set(toll_free)
    zones = resolve_zones(toll_free, None)
    start = utc(2024, 6, 3, 0, 0)
    assert next_open(EVERY_DAY, start, zones) is None  # no hour is 09:00-20:00 in all of them
    decision = triage(zones, 0, False, start, EVERY_DAY, 3)
    assert decision == Later(start + timedelta(days=1))  # looked at again tomorrow, never dialled
    au = resolve_zones(number_zones(to_e164("+61 491 570 156")), None)  # Perth to Lord Howe and Christmas Island
    opens = next_open(EVERY_DAY, utc(2024, 6, 3, 12, 0), au)
    assert opens is not None and all(is_open(EVERY_DAY, opens, [z]) for z in au)


def test_triage_dnc_attempts_timezone_window():
    now = utc(2024, 6, 3, 14, 0)  # 10:00 in New York
    assert triage([NY], 0, True, now, WEEKDAYS, 3) == Final("dnc", "dnc")
    assert triage([NY], 3, False, now, WEEKDAYS, 3) == Final("failed", "max_attempts")
    assert triage([], 0, False, now, WEEKDAYS, 3) == Final("invalid", "no_timezone")
    assert triage(resolve_zones([], "Europe/Paris"), 0, False, now, WEEKDAYS, 3) == Dial()
    assert triage([PARIS], 0, False, utc(2024, 6, 3, 19, 0), WEEKDAYS, 3) == Later(utc(2024, 6, 4, 7, 0))


# ---- outcomes ---------------------------------------------------------------------------------

def _report(answered: bool, *, cause=None, disposition=None, amd=None, first_audio=0.12, rows=()):
    events = []
    if answered:
        events.append({"t": 0.0, "source": "switch", "type": "CHANNEL_ANSWER"})
        if first_audio is not None:
            events.append({"t": first_audio, "source": "switch", "type": "PLAYBACK_START", "file": "greeting.wav"})
    events.extend(rows)
    events.append({"t": 9.0 if answered else None, "source": "switch", "type": "CHANNEL_HANGUP"})
    return {"disposition": disposition, "amd": amd, "events": events, "flags": [],
            "hangup": {"by": "callee", "cause": cause}}


@pytest.mark.parametrize("report, outcome", [
    (_report(True, cause="NORMAL_CLEARING", disposition="confirmed", amd="human"), "completed"),
    (_report(True, cause="NORMAL_CLEARING", disposition="voicemail_left", amd="machine"), "completed"),
    (_report(True, cause="NORMAL_CLEARING", disposition="machine_hangup", amd="machine"), "machine"),
    # the outcome follows what the call did: a machine verdict that came after AMD had settled (its deadline) is
    # not a machine to retry; the person heard the whole script
    (_report(True, cause="NORMAL_CLEARING", disposition="no_reply", amd="machine", rows=[
        {"t": 7.0, "source": "robot", "type": "amd_result", "result": "notsure", "action": "human"},
        {"t": 13.8, "source": "robot", "type": "amd_result", "result": "machine", "action": "none"}]), "completed"),
    (_report(True, cause="NORMAL_CLEARING", disposition="machine_no_beep", amd="machine", rows=[
        {"t": 2.0, "source": "robot", "type": "amd_result", "result": "machine", "action": "leave_message"}]), "machine"),
    (_report(True, cause="NORMAL_CLEARING", disposition="do_not_call", amd="human"), "opted_out"),
    (_report(True, cause="NORMAL_CLEARING", disposition="no_reply",
             rows=[{"t": 3, "source": "robot", "type": "reply", "outcome": "stop"}]), "opted_out"),
    (_report(False, cause=None, disposition="user_busy"), "busy"),
    (_report(False, cause="USER_BUSY", disposition="user_busy"), "busy"),
    (_report(False, cause="NO_ANSWER"), "no_answer"),
    (_report(False, cause="NO_USER_RESPONSE"), "no_answer"),
    (_report(False, disposition="no_answer_timeout"), "no_answer"),
    (_report(False, cause="UNALLOCATED_NUMBER"), "unallocated"),
    (_report(False, cause="INVALID_NUMBER_FORMAT"), "unallocated"),
    (_report(False, cause="NO_ROUTE_DESTINATION"), "unallocated"),
    (_report(False, cause="CALL_REJECTED"), "failed"),
    (_report(False, cause="NORMAL_TEMPORARY_FAILURE"), "failed"),
])
def test_outcomes_from_hangup_causes_and_dispositions(report, outcome):
    assert outcome_of(summarize(report)) == outcome


def test_a_machine_hung_up_on_is_a_machine_to_retry_even_with_the_voicemail_disposition():
    # on_machine = "hangup" ends the call with the [voicemail] disposition, but no message was left
    report = _report(True, cause="NORMAL_CLEARING", disposition="machine", amd="machine")
    assert outcome_of(summarize(report), "machine") == "completed"  # a scenario that leaves messages
    assert outcome_of(summarize(report), None) == "machine"  # one that hangs up
    human = _report(True, cause="NORMAL_CLEARING", disposition="confirmed", amd="human")
    assert outcome_of(summarize(human), None) == "completed"


def test_abandonment_is_first_robot_audio_later_than_the_limit_after_answer():
    assert not is_abandoned(summarize(_report(True, first_audio=0.12)), 2.0)
    assert is_abandoned(summarize(_report(True, first_audio=2.5)), 2.0)
    assert is_abandoned(summarize(_report(True, first_audio=None)), 2.0)  # 9 s with no audio at all
    assert not is_abandoned(summarize(_report(False)), 2.0)
    quick = CallSummary(True, "NORMAL_CLEARING", None, None, False, None, 1.0, False)
    assert not is_abandoned(quick, 2.0)  # hung up after 1 s, before the robot was late


def test_after_attempt_retries_until_max_attempts():
    now = utc(2024, 6, 3, 14, 0)
    retry = CampaignSettings().retry_after
    assert after_attempt("busy", 1, 3, retry, now).next_due_at == now + timedelta(seconds=600)
    assert after_attempt("busy", 1, 3, retry, now).state == "pending"
    assert after_attempt("no_answer", 3, 3, retry, now).state == "failed"
    assert after_attempt("completed", 1, 3, retry, now).state == "done"
    assert after_attempt("opted_out", 1, 3, retry, now).state == "done"
    assert after_attempt("unallocated", 1, 3, retry, now).state == "failed"
    with pytest.raises(ValueError, match="unknown outcome"):
        after_attempt("lost", 1, 3, retry, now)


def test_pacing_is_campaign_wide_and_never_bursts():
    t0 = utc(2024, 6, 3, 14, 0)
    first = pace(t0, None, 2.0)
    assert first.allowed and first.next_slot == t0 + timedelta(seconds=0.5)
    blocked = pace(t0 + timedelta(seconds=0.2), first.next_slot, 2.0)
    assert not blocked.allowed and blocked.wait_s == pytest.approx(0.3)
    late = pace(t0 + timedelta(seconds=60), first.next_slot, 2.0)  # idle a minute: no credit saved up
    assert late.allowed and late.next_slot == t0 + timedelta(seconds=60.5)
    assert capacity(8, 10) == 2 and capacity(12, 10) == 0
    assert CampaignSettings(calls_per_second=100, switch_sps=30).cps == 30

