"""Which command a switch reply answers, and which bgapi a BACKGROUND_JOB completes: sans-I/O.

mod_event_socket answers the commands of one connection one by one, in the order they came
(``api`` runs in the listener thread, and ``bgapi``'s command/reply is written before its job
event, wire-facts 2.3). So a ``command/reply`` or ``api/response`` answers the oldest command
still waiting: FIFO. A bgapi's result comes later, as a BACKGROUND_JOB event carrying its
``Job-UUID``, in any order.

:class:`ReplyMatcher` is told what was sent and is fed what was parsed, in wire order; it says
what each message answers. It holds opaque tags (a shell's waiters, or ints in tests) and never
reads a socket, a clock or a greenlet: timeouts are the shell's, which tells the matcher when it
gave up on a command (:meth:`ReplyMatcher.abandon`) or a job (:meth:`ReplyMatcher.forget_job`).
A command the shell gave up on keeps its place in the queue, so the replies after it stay aligned.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Hashable, TypeVar

from callbot.esl.protocol import EslEvent, Reply

Tag = TypeVar("Tag", bound=Hashable)

REPLY_TYPES = ("command/reply", "api/response")


class Sent(enum.Enum):
    """What kind of command is waiting: it decides which Content-Type should answer it."""

    API = "api"          # answered by api/response
    BGAPI = "bgapi"      # answered by command/reply (+OK Job-UUID: …), then a BACKGROUND_JOB
    COMMAND = "command"  # auth, event, filter, exit, …: answered by command/reply

    @property
    def reply_type(self) -> str:
        return "api/response" if self is Sent.API else "command/reply"


@dataclass(frozen=True)
class Answered(Generic[Tag]):
    """A reply answered the oldest waiting command.

    ``abandoned``: the shell had given up on it, so the reply is only to be dropped.
    ``job_uuid``: for an accepted bgapi, the id its BACKGROUND_JOB will carry (the switch's echo
    of ours); None for a refused one, whose job will never come.
    """

    tag: Tag
    sent: Sent
    reply: Reply
    abandoned: bool = False
    job_uuid: str | None = None

    @property
    def expected_type(self) -> bool:
        """False when the Content-Type is not the usual one (an ``api`` sent before ``auth``
        gets a command/reply ``-ERR command not found``)."""
        return self.reply.content_type == self.sent.reply_type


@dataclass(frozen=True)
class Unsolicited:
    """A reply arrived while no command was waiting (a peer bug, or state lost): drop it."""

    reply: Reply


@dataclass(frozen=True)
class JobDone(Generic[Tag]):
    """A BACKGROUND_JOB completed the bgapi whose job tag this is; ``body`` is the job's output."""

    tag: Tag
    job_uuid: str
    body: str


@dataclass(frozen=True)
class Lost(Generic[Tag]):
    """What was still waiting when the connection went: every command, then every job."""

    commands: list[Tag] = field(default_factory=list)
    jobs: list[Tag] = field(default_factory=list)


@dataclass
class _Waiting(Generic[Tag]):
    tag: Tag
    sent: Sent
    job_uuid: str | None = None
    job_tag: Tag | None = None
    abandoned: bool = False


class ReplyMatcher(Generic[Tag]):
    """The commands and jobs of one connection that wait for the switch; see the module docstring."""

    def __init__(self) -> None:
        self._queue: deque[_Waiting[Tag]] = deque()
        self._by_tag: dict[Tag, _Waiting[Tag]] = {}
        self._jobs: dict[str, Tag] = {}        # Job-UUID -> job tag
        self._job_ids: dict[Tag, str] = {}     # job tag -> Job-UUID
        self._abandoned = 0

    # ---- what the shell sent -----------------------------------------------------------------

    def api_sent(self, tag: Tag) -> None:
        """An ``api`` line went out; ``tag`` gets its api/response."""
        self._push(_Waiting(tag, Sent.API))

    def command_sent(self, tag: Tag) -> None:
        """A plain command (auth, event, filter, exit, …) went out; ``tag`` gets its command/reply."""
        self._push(_Waiting(tag, Sent.COMMAND))

    def bgapi_sent(self, tag: Tag, job_uuid: str, job_tag: Tag) -> None:
        """A ``bgapi`` with header ``Job-UUID: job_uuid`` went out: ``tag`` gets its command/reply,
        ``job_tag`` its BACKGROUND_JOB (raises ValueError if that job id or tag is already waiting)."""
        if not job_uuid or job_uuid in self._jobs or job_tag in self._job_ids:
            raise ValueError(f"bgapi job {job_uuid!r} is already waiting (or empty): use a fresh Job-UUID")
        self._push(_Waiting(tag, Sent.BGAPI, job_uuid, job_tag))
        self._jobs[job_uuid] = job_tag
        self._job_ids[job_tag] = job_uuid

    def _push(self, waiting: _Waiting[Tag]) -> None:
        if waiting.tag in self._by_tag:
            raise ValueError(f"command tag {waiting.tag!r} is already waiting for a reply")
        self._queue.append(waiting)
        self._by_tag[waiting.tag] = waiting

    # ---- what the shell gave up on -----------------------------------------------------------

    def abandon(self, tag: Tag) -> bool:
        """The shell stopped waiting for this command's reply (timeout, cancellation).

        Its place in the queue stays (its reply will still come, and must not be taken for the
        next command's); a bgapi's job is forgotten with it. False if the tag is not waiting.
        """
        waiting = self._by_tag.get(tag)
        if waiting is None or waiting.abandoned:
            return False
        waiting.abandoned = True
        self._abandoned += 1
        if waiting.job_tag is not None:
            self.forget_job(waiting.job_tag)
        return True

    def forget_job(self, job_tag: Tag) -> bool:
        """The shell stopped waiting for this job (its own timeout); a late BACKGROUND_JOB is then
        just an event. False if the job was not waiting."""
        job_uuid = self._job_ids.pop(job_tag, None)
        if job_uuid is None:
            return False
        del self._jobs[job_uuid]
        return True

    def connection_lost(self) -> Lost[Tag]:
        """Everything still waiting, to be failed by the shell; the matcher is empty afterwards.

        Abandoned commands are not listed: nobody waits for them.
        """
        lost = Lost([w.tag for w in self._queue if not w.abandoned], list(self._job_ids))
        self._queue.clear()
        self._by_tag.clear()
        self._jobs.clear()
        self._job_ids.clear()
        self._abandoned = 0
        return lost

    # ---- what the switch sent ----------------------------------------------------------------

    def receive(self, message: Reply | EslEvent) -> Answered[Tag] | Unsolicited | JobDone[Tag] | None:
        """Feed one parsed message, in wire order; None when it answers nothing.

        A ``command/reply`` or ``api/response`` (as a Reply) gives Answered, or Unsolicited when no
        command waits. A BACKGROUND_JOB (as an EslEvent) whose Job-UUID waits gives JobDone; any
        other event or message gives None.
        """
        if isinstance(message, EslEvent):
            return self._job_event(message)
        if message.content_type not in REPLY_TYPES:
            return None
        if not self._queue:
            return Unsolicited(message)
        waiting = self._queue.popleft()
        del self._by_tag[waiting.tag]
        if waiting.abandoned:
            self._abandoned -= 1
        job_uuid = None
        if waiting.job_tag is not None:
            job_uuid = self._bgapi_answered(waiting, message)
        return Answered(waiting.tag, waiting.sent, message, waiting.abandoned, job_uuid)

    def _bgapi_answered(self, waiting: _Waiting[Tag], reply: Reply) -> str | None:
        """An accepted bgapi's job keeps waiting, under the id the switch echoed; a refused one's goes."""
        ours = waiting.job_uuid or ""
        if self._job_ids.get(waiting.job_tag) != ours:  # forgotten (abandoned, or its own timeout)
            return None
        if not reply.reply_text.startswith("+OK"):
            self.forget_job(waiting.job_tag)
            return None
        echoed = reply.headers.get("Job-UUID") or ours
        if echoed != ours:
            if echoed in self._jobs:  # the switch reused an id that another job waits on: keep ours
                return ours
            del self._jobs[ours]
            self._jobs[echoed] = waiting.job_tag
            self._job_ids[waiting.job_tag] = echoed
        return echoed

    def _job_event(self, event: EslEvent) -> JobDone[Tag] | None:
        if event.name != "BACKGROUND_JOB":
            return None
        job_uuid = event.get("Job-UUID") or ""
        job_tag = self._jobs.pop(job_uuid, None)
        if job_tag is None:
            return None  # another client's job (filters let every BACKGROUND_JOB through), or a forgotten one
        del self._job_ids[job_tag]
        return JobDone(job_tag, job_uuid, event.body or "")

    # ---- state -------------------------------------------------------------------------------

    @property
    def commands_waiting(self) -> int:
        """Commands sent and not yet answered, abandoned ones included (they still hold a place)."""
        return len(self._queue)

    @property
    def abandoned_waiting(self) -> int:
        """Commands the shell gave up on whose replies have not come: a switch that answers none
        of several in a row has stopped answering."""
        return self._abandoned

    @property
    def jobs_waiting(self) -> int:
        """bgapi jobs whose BACKGROUND_JOB has not come."""
        return len(self._job_ids)

    def job_uuid(self, job_tag: Tag) -> str | None:
        """The Job-UUID this job waits under (the switch's echo once its reply came), or None."""
        return self._job_ids.get(job_tag)
