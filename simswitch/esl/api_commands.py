"""The ``api``/``bgapi`` commands simswitch implements, with FreeSWITCH's exact reply strings.

Each command returns the api body (``api/response`` text, or the BACKGROUND_JOB body). An empty
string becomes ``-ERR no reply`` when framed, as in mod_event_socket.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid as uuidlib
from typing import Awaitable, Callable

from callbot.simswitch.calls.callees import DialError
from callbot.simswitch.calls.cdr_file import CdrFile, Originate
from callbot.simswitch.calls.channel import Q850, Channel
from callbot.simswitch.calls.directory import CalleeDirectory, dialled_number
from callbot.simswitch.calls.registry import CallRegistry
from callbot.simswitch.esl.argsplit import split_args
from callbot.simswitch.host import SwitchHost
from callbot.simswitch.media.ws_frames import parse_ws_url

log = logging.getLogger(__name__)

VERSION = "1.10.12-release"
STREAM_USAGE = ("-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] "
                "[wss-url | path] [mono | mixed | stereo] [8000 | 16000] [metadata]\n")
ORIGINATE_USAGE = ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] "
                   "[<cid_name>] [<cid_num>] [<timeout_sec>]\n")
STREAM_FAIL = "-ERR Operation Failed\n"
NO_CHANNEL = "-ERR No such channel!\n"
SHOW_COLUMNS = ("uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest,application,"
                "application_data,dialplan,context,read_codec,read_rate,read_bit_rate,write_codec,write_rate,"
                "write_bit_rate,secure,hostname,presence_id,presence_data,accountcode,callstate,callee_name,"
                "callee_num,callee_direction,call_uuid,sent_callee_name,sent_callee_num,initial_cid_name,"
                "initial_cid_num,initial_ip_addr,initial_dest,initial_dialplan,initial_context").split(",")
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_CAUSE = re.compile(r"^[A-Z_]{2,40}$")


def parse_originate_vars(text: str) -> dict[str, str]:
    """``a=1,b='x,y'`` → dict; single quotes protect commas."""
    out: dict[str, str] = {}
    for part in re.findall(r"(?:[^,']|'[^']*')+", text):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip().strip("'")
    return out


def _closing(text: str, opening: str, closing: str) -> int:
    """Index of the bracket that ends a leading ``{vars}``/``[vars]`` block, nesting counted (switch_find_end_paren)."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == opening:
            depth += 1
        elif ch == closing:
            depth -= 1
            if depth == 0:
                return i
    return -1


def leg_variables(url: str) -> tuple[dict[str, str], str | None]:
    """The ``{…}`` (originate) and ``[…]`` (leg) variables before an endpoint, and the endpoint
    (None when a block is not closed)."""
    variables: dict[str, str] = {}
    for opening, closing in (("{", "}"), ("[", "]")):
        while url.startswith(opening):
            end = _closing(url, opening, closing)
            if end == -1:
                return variables, None
            variables.update(parse_originate_vars(url[1:end]))
            url = url[end + 1:]
    return variables, url


class _Refused(Exception):
    """An originate fails at once, without a channel: the reply, and its cause for the CDR."""

    def __init__(self, reply: str, cause: str | None) -> None:
        super().__init__(reply)
        self.reply, self.cause = reply, cause


class ApiCommands:
    """Dispatch ``<cmd> <args>`` to a handler; every handler is async and returns the body."""

    def __init__(self, switch: SwitchHost, registry: CallRegistry, directory: CalleeDirectory,
                 cdr: CdrFile | None = None) -> None:
        self.switch = switch
        self.registry = registry
        self.directory = directory
        self.cdr = cdr
        self.handlers: dict[str, Callable[[str], Awaitable[str]]] = {
            "status": self.status, "version": self.version, "strftime": self.strftime, "module_exists": self.module_exists,
            "originate": self.originate, "uuid_broadcast": self.uuid_broadcast, "uuid_break": self.uuid_break,
            "uuid_kill": self.uuid_kill, "uuid_fileman": self.uuid_fileman, "uuid_exists": self.uuid_exists, "uuid_getvar": self.uuid_getvar,
            "hupall": self.hupall, "show": self.show, "uuid_audio_stream": self.uuid_audio_stream,
        }

    async def execute(self, cmd: str, args: str) -> str:
        """Run one command, record it in the call's truth, then fire the API event."""
        handler = self.handlers.get(cmd)
        first = args.split(" ", 1)[0]
        channel = self.registry.calls.get(first)
        if channel is not None:
            channel.record("command", line=f"{cmd} {args}".strip())
        if handler is None:
            body = f"-ERR {cmd} Command not found!\n"
        else:
            body = await handler(args)
        post = [("API-Command", cmd)] + ([("API-Command-Argument", args)] if args else [])
        self.switch.publish(self.switch.events.make("API", post=post))
        return body

    # ---- switch-level -----------------------------------------------------------------------

    async def status(self, args: str) -> str:
        us = int(self.switch.clock.now() * 1_000_000)
        parts, rest = [], us
        for unit, size in (("microseconds", 1000), ("milliseconds", 1000), ("seconds", 60), ("minutes", 60),
                           ("hours", 24), ("days", 365)):
            rest, v = divmod(rest, size)
            parts.append(f"{v} {unit[:-1] if v == 1 else unit}")
        parts.append(f"{rest} {'year' if rest == 1 else 'years'}")
        s, r = self.switch, self.registry
        live, total, peak = len(r.live), r.sessions_since_start, r.peak_sessions
        return (f"UP {', '.join(reversed(parts))}\nFreeSWITCH (Version {VERSION}  64bit) is ready\n"
                f"{total} session(s) since startup\n{live} session(s) - peak {peak}, last 5min {peak} \n"
                f"0 session(s) per Sec out of max 30, peak {peak}, last 5min {peak} \n"
                f"{s.settings.max_calls} session(s) max\nmin idle cpu 0.00/99.00\n"
                "Current Stack Size/Max 240K/8192K\n")

    async def version(self, args: str) -> str:
        return f"FreeSWITCH Version {VERSION}~64bit ( 64bit)\n"

    async def strftime(self, args: str) -> str:
        """mod_dptools' ``strftime [<epoch>|]<format>``, local time of the switch's (virtual) clock.

        ``strftime %s`` lets a campaign runner read simswitch's virtual time as it would a real
        switch's. As upstream, the character right after ``|`` is skipped."""
        when, fmt = self.switch.clock.epoch_us() / 1_000_000, args
        if "|" in args:
            epoch, _, rest = args.partition("|")
            digits = re.match(r"^\s*[+-]?\d*", epoch).group(0).strip()  # type: ignore[union-attr]  # atol
            when, fmt = float(int(digits)) if digits.lstrip("+-") else 0.0, rest[1:]
        return time.strftime(fmt or "%Y-%m-%d %H:%M:%S", time.localtime(when))

    async def module_exists(self, args: str) -> str:
        return "true" if args.strip() in ("mod_audio_stream", "mod_commands", "mod_event_socket",
                                          "mod_dptools") else "false"

    # ---- originate --------------------------------------------------------------------------

    async def originate(self, args: str) -> str:
        """Place a call; the reply waits for its answer or failure. Every originate gets a CDR line."""
        argv = split_args(args, 7)
        url = argv[0] if argv else ""
        variables, endpoint = leg_variables(url)
        call = Originate(uuid=variables.get("origination_uuid") or str(uuidlib.uuid4()), dial_string=url,
                         number=dialled_number(url), received_us=self.switch.clock.epoch_us())
        try:
            channel = self._channel_for(argv, variables, endpoint, call.uuid)
        except _Refused as refused:
            if self.cdr is not None:
                self.cdr.failed(call, refused.cause)
            return refused.reply
        if self.cdr is not None:
            self.cdr.opened(call)
        self.registry.add(channel)
        channel.start()
        return await channel.result

    def _channel_for(self, argv: list[str], variables: dict[str, str], endpoint: str | None,
                     uuid: str) -> Channel:
        """The new leg of an originate, or _Refused with FreeSWITCH's reply."""
        if len(argv) < 2:
            raise _Refused(ORIGINATE_USAGE, None)
        if endpoint is None:
            raise _Refused("-ERR INVALID_URL\n", "INVALID_URL")
        app = argv[1]
        s, r = self.switch, self.registry
        try:
            spec = self.directory.resolve(endpoint, variables)
        except DialError as exc:
            log.warning("originate refused", extra={"dial": argv[0], "reason": str(exc)})
            raise _Refused(f"-ERR {exc.cause}\n", exc.cause) from None
        if spec.fail_cause:
            raise _Refused(f"-ERR {spec.fail_cause}\n", spec.fail_cause)
        if app not in ("&park()", "&park", "park"):
            log.warning("only &park() is emulated", extra={"app": app})
            raise _Refused("-ERR DESTINATION_OUT_OF_ORDER\n", "DESTINATION_OUT_OF_ORDER")
        if not _ID.match(uuid) or uuid in r.calls:
            log.warning("bad or duplicate origination_uuid", extra={"uuid": uuid[:80]})
            raise _Refused("-ERR NORMAL_TEMPORARY_FAILURE\n", "NORMAL_TEMPORARY_FAILURE")
        if len(r.live) >= s.settings.max_calls:
            raise _Refused("-ERR SWITCH_CONGESTION\n", "SWITCH_CONGESTION")
        timeout = 60.0
        if len(argv) >= 7 and argv[6].isdigit() and int(argv[6]) > 0:
            timeout = float(argv[6])
        ot = variables.get("originate_timeout", "")
        if ot.isdigit() and int(ot) > 0:
            timeout = float(ot)
        return Channel(s, uuid, spec, variables, endpoint, timeout, r.next_session_id())

    # ---- per call ---------------------------------------------------------------------------

    async def uuid_broadcast(self, args: str) -> str:
        argv = split_args(args, 3)
        if len(argv) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
        channel = self.registry.up(argv[0])
        if channel is None:
            return "-ERR invalid uuid\n"
        path = argv[1].removeprefix("playback::")
        if not channel.broadcast(path):
            return "-ERR queue full\n"
        return "+OK Message sent\n"

    def _with_channel(self, args: str, min_args: int, usage: str,
                      action: Callable[[Channel, list[str]], str]) -> str:
        """The common shape of ``uuid_*`` commands: usage check, channel lookup, then the action."""
        argv = args.split()
        if len(argv) < min_args:
            return f"-USAGE: {usage}\n"
        channel = self.registry.up(argv[0])
        return NO_CHANNEL if channel is None else action(channel, argv)

    async def uuid_break(self, args: str) -> str:
        def act(channel: Channel, argv: list[str]) -> str:
            channel.break_playback(flush=len(argv) > 1 and argv[1] == "all")
            return "+OK\n"
        return self._with_channel(args, 1, "<uuid> [all]", act)

    async def uuid_fileman(self, args: str) -> str:
        """``+OK`` to any subcommand while a file plays (mod_commands ignores process_fh's result)."""
        return self._with_channel(args, 2, "<uuid> <cmd>:<val>", lambda channel, argv: (
            "+OK\n" if channel.fileman(argv[1]) else "-ERR No file handle!\n"))

    async def uuid_kill(self, args: str) -> str:
        def act(channel: Channel, argv: list[str]) -> str:
            cause = argv[1].upper() if len(argv) > 1 and argv[1].upper() in Q850 else "NORMAL_CLEARING"
            channel.hangup(cause, "robot")
            return "+OK\n"
        return self._with_channel(args, 1, "<uuid> [cause]", act)

    async def uuid_exists(self, args: str) -> str:
        return "true" if self.registry.up(args.strip()) is not None else "false"

    async def uuid_getvar(self, args: str) -> str:
        return self._with_channel(args, 2, "<uuid> <var> [<timeout>]",
                                  lambda channel, argv: channel.variables.get(argv[1], "_undef_"))

    async def hupall(self, args: str) -> str:
        argv = args.split()
        cause = argv[0].upper() if argv and _CAUSE.match(argv[0].upper()) and argv[0].upper() in Q850 \
            else "MANAGER_REQUEST"
        var, val = (argv[1], argv[2]) if len(argv) >= 3 else (None, None)
        for channel in list(self.registry.live.values()):
            if var is None or channel.variables.get(var) == val:
                channel.hangup(cause, "hupall")
        if var is not None:
            return f"+OK hangup all channels matching [{var}]=[{val}] with cause: {cause}\n"
        return f"+OK hangup all channels with cause {cause}\n"

    async def show(self, args: str) -> str:
        argv = args.split()
        if not argv or argv[0] != "channels":
            return "-USAGE: channels [as json]\n"
        rows = [self._show_row(c) for c in self.registry.live.values()]
        if len(argv) >= 3 and argv[1] == "as" and argv[2] == "json":
            if not rows:
                return '{"row_count": 0}\n'
            return json.dumps({"row_count": len(rows), "rows": rows}) + "\n"
        if not rows:
            return "\n0 total.\n"
        lines = [",".join(SHOW_COLUMNS)] + [",".join(r[c] for c in SHOW_COLUMNS) for r in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"

    def _show_row(self, c: Channel) -> dict[str, str]:
        row = dict.fromkeys(SHOW_COLUMNS, "")
        row.update(uuid=c.uuid, direction="outbound", created_epoch=str(c.created_us // 1_000_000),
                   name=c.name, state=c.state, cid_name="Outbound Call", cid_num="0000000000",
                   dest=c.spec.destination, application=c.application, application_data=c.application_data,
                   dialplan="XML", context="default", read_codec="L16", read_rate="8000", read_bit_rate="128000",
                   write_codec="L16", write_rate="8000", write_bit_rate="128000",
                   hostname=self.switch.events.identity.hostname,
                   callstate=c.call_state, call_uuid=c.uuid, initial_cid_name="Outbound Call",
                   initial_cid_num="0000000000", initial_dest=c.spec.destination, initial_dialplan="XML",
                   initial_context="default")
        return row

    # ---- mod_audio_stream -------------------------------------------------------------------

    async def uuid_audio_stream(self, args: str) -> str:
        argv = split_args(args, 6)
        if len(argv) < 2 or (argv[1] == "start" and len(argv) < 4):
            return STREAM_USAGE
        channel = self.registry.up(argv[0])
        if channel is None:
            return STREAM_FAIL
        action, stream = argv[1], channel.stream
        if action == "start":
            return self._stream_start(channel, argv)
        if stream is None:
            return STREAM_FAIL
        if action == "stop":
            await stream.stop(argv[2] if len(argv) > 2 else None)
        elif action == "send_text":
            if len(argv) < 3 or not argv[2]:
                return ""  # the module writes nothing: "-ERR no reply"
            stream.send_text(argv[2])
        elif action in ("pause", "resume"):
            stream.set_paused(action == "pause")
            channel.record("stream_" + ("paused" if action == "pause" else "resumed"), samples=stream.samples_sent)
        else:
            return STREAM_FAIL  # graceful-shutdown is in the syntax string but unimplemented upstream
        return "+OK Success\n"

    def _stream_start(self, channel: Channel, argv: list[str]) -> str:
        if channel.streaming or channel.hungup:
            return STREAM_FAIL
        url = parse_ws_url(argv[2])
        mix = argv[3]
        if url is None or mix not in ("mono", "mixed", "stereo"):
            return STREAM_FAIL
        rate_s = argv[4] if len(argv) > 4 else "8k"
        rate = {"16k": 16000, "8k": 8000}.get(rate_s)
        if rate is None:
            digits = re.match(r"^\d*", rate_s).group(0)  # type: ignore[union-attr]  # atoi
            rate = int(digits) if digits else 0
        if rate <= 0 or rate % 8000 or rate > 48000:  # atoi 0 passes upstream; it makes no sense here
            return STREAM_FAIL
        metadata = argv[5] if len(argv) > 5 else None
        if metadata is not None and len(metadata.encode("utf-8")) >= 8192:
            metadata = metadata.encode("utf-8")[:8191].decode("utf-8", errors="ignore")  # strncpy into 8192
        channel.start_stream(url, mix, rate, metadata)
        return "+OK Success\n"
