"""Dial strings: the accepted endpoint forms, and hostile destinations refused with the character named."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbot.robot.esl.dialstring import ACCEPTED_FORMS, DialStringError, check_dial_string

ACCEPTED = [
    "sofia/internal/1000",
    "sofia/external/+15551234567@sip.example.com",
    "sofia/internal/1000@10.0.0.5:5080",
    "sofia/internal/*97",
    "sofia/gateway/carrier/+15551234567",
    "sofia/gateway/my-gw.1/0033123456789",
    "loopback/callee",
    "loopback/callee-a/default",
    "loopback/long_reply/callbot_test",
    "user/1000",
    "user/1000@example.com",
    "fixture/long_reply",
    "fixture//work/shared/conformance/audio/x.wav",
    "fixture/short_yes?hangup_after_s=3",
    "fixture/x.wav?answer_delay_ms=800&hangup_at_end=true&reject=USER_BUSY",
    "fixture/short_yes?answer_delay_ms=-5",
    "error/user_busy",
    "error/NO_ANSWER",
]


@pytest.mark.parametrize("dial", ACCEPTED)
def test_accepted_forms(dial):
    assert check_dial_string(dial) == dial


# (destination, the character or part the error must name, words of the reason)
REFUSED = [
    ("[api_on_answer=hupall]user/1000", "'[' at character 1", "only from the robot's settings"),
    ("{origination_caller_id_number=1}user/1000", "'{' at character 1", "only from the robot's settings"),
    ("<leg_timeout=1>user/1000", "'<' at character 1", "only from the robot's settings"),
    ("user/1000[x=1]", "'[' at character 10", "channel variables"),
    ("user/1000,user/1001", "',' at character 10", "several endpoints at once"),
    ("user/1000|user/1001", "'|' at character 10", "one after another"),
    ("user/1000:_:user/1001", "':_:' at character 10", "enterprise originate"),
    ("user/1000@host:5060", "':' at character 15", "only before the port"),
    ("loopback/a:b", "':' at character 11", "only before the port"),
    ("user/1000 &bgsystem(reboot)", "' ' at character 10", "originate would take the rest"),
    ("user/1000\t", "'\\t' at character 10", "whitespace"),
    ("user/1000\n", "'\\n' at character 10", "whitespace"),
    ("user/\x001000", "'\\x00' at character 6", "control characters"),
    ("user/${hupall(MANAGER_REQUEST)}", "'$' at character 6", "API command"),
    ("user/'1000'", "\"'\" at character 6", "quotes"),
    ('user/"1000"', "'\"' at character 6", "quotes"),
    ("user/1000\\", "'\\\\' at character 10", "backslashes"),
    ("user/1000;transport=tcp", "';' at character 10", "SIP URI parameters"),
    ("user/1000!x", "'!' at character 10", "hangup cause"),
    ("user/10%300", "'%' at character 8", "escape"),
    ("user/é", "'é' at character 6", "ASCII"),
    ("loopback/a?x=1", "'?' at character 11", "fixture"),
    ("loopback/a&b", "'&' at character 11", "fixture"),
    ("loopback/a@b", "'@' at character 11", "sofia/<profile>/<user>@<host>"),
    ("sofia/internal/1000@[::1]", "'[' at character 21", "channel variables"),
    ("sofia/internal/1000@h:0", "port 0", "1..65535"),
    ("sofia/internal/1000@h:99999", "port 99999", "1..65535"),
    ("sofia/internal/1000@-h", "host '-h'", "not a host name"),
    ("sofia/internal/1000@a@b", "'@' at character 22", "sofia/<profile>/<user>@<host>"),
    ("sofia/internal", "sofia/<profile>/<user>", "this has 1"),
    ("sofia/gateway/gw", "sofia/gateway/<gateway>/<number>", "this has 2"),
    ("sofia/gateway/gw/1@h", "'@' at character 19", "sofia/<profile>"),
    ("loopback/a/b/c", "loopback/<extension>[/<context>]", "this has 3"),
    ("user/1000/x", "user/<id>[@<domain>]", "this has 2"),
    ("user/", "user id is empty", "empty"),
    ("fixture/x?bad", "fixture option 'bad'", "<key>=<value>"),
    ("fixture/x?a=1&", "fixture option ''", "<key>=<value>"),
    ("fixture/x?Key=1", "fixture option 'Key=1'", "lower-case key"),
    ("fixture/x?a=b=c", "'=' at character 14", "fixture"),
    ("error/user busy", "' ' at character 11", "whitespace"),
    ("error/user-busy", "'-' at character 11", "not allowed in this part"),
    ("http/x", "endpoint 'http'", "not one the robot dials"),
    ("1000", "no endpoint", "before a '/'"),
    ("", "a destination is required", ""),
    ("user/" + "1" * 600, "over 512", "characters long"),
]


@pytest.mark.parametrize("dial,names,why", REFUSED, ids=[r[0][:30] for r in REFUSED])
def test_refused_with_the_offending_character_and_the_accepted_forms(dial, names, why):
    with pytest.raises(DialStringError) as err:
        check_dial_string(dial)
    message = str(err.value)
    assert names in message and why in message
    assert message.endswith("Accepted forms: " + ", ".join(ACCEPTED_FORMS))


def test_not_a_string_is_refused():
    with pytest.raises(DialStringError, match="a destination is required"):
        check_dial_string(None)  # type: ignore[arg-type]


# Whatever a destination holds, either it is refused with DialStringError, or it has none of the
# characters that make originate do more than dial one endpoint.
DANGEROUS = set(" \t\r\n\x00{}[]<>,|'\"\\$^;!%`") | {":_:"}


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(string.printable + "é\x00\u2028"), max_size=60)
       | st.builds(lambda e, r: e + "/" + r, st.sampled_from(["sofia", "loopback", "user", "fixture", "error"]),
                   st.text(alphabet=string.printable, max_size=40)))
def test_fuzz_only_errors_or_safe_endpoints(dial):
    try:
        check_dial_string(dial)
    except DialStringError as exc:
        assert "Accepted forms:" in str(exc)
        return
    assert not any(bad in dial for bad in DANGEROUS), dial
    assert dial.split("/", 1)[0] in ("sofia", "loopback", "user", "fixture", "error")
    assert dial.isascii() and dial.isprintable()
