"""`campaign run`: the I/O shell around the dialer's rules: claims, calls in greenlets, leases, reconciliation, exit.

Threads: this (the caller's) thread runs the loop and all claim and lease transactions; the
robot's gevent thread runs the shared ESL client and one greenlet per call (robot.call's
CallSession); the recorder's thread writes each timeline row as it happens (robot.store.recorder),
to the journal while the database is unavailable. Before the first dial: the schema is current,
the journal is replayed, the runner row is written (the database takes writes), the switch
passes its checks, and attempts of dead runners on this switch are reconciled.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from callbot.config import CampaignSettings, Settings
from callbot.robot.campaign import claims
from callbot.robot.campaign.contacts import CampaignError, get_campaign
from callbot.robot.campaign.metrics import RunnerMetrics
from callbot.robot.campaign.progress import RunProgress
from callbot.robot.campaign.rules import (
    after_attempt, answered_row, first_audio_row, is_abandoned, opt_out_row, outcome_of, summarize,
)
from callbot.robot.campaign.settings import effective
from callbot.robot.campaign.status import next_due
from callbot.robot.campaign.times import CampaignClock, iso
from callbot.windows import parse_windows
from callbot.robot.store import records
from callbot.robot.store.engine import explain, is_unavailable
from callbot.robot.store.journal import Journal, JournalError
from callbot.robot.store.models import Campaign
from callbot.robot.store.recorder import CallRecorder
from callbot.robot.store.schema import SchemaError, ensure_schema

log = logging.getLogger(__name__)

EXIT_DONE, EXIT_ERROR, EXIT_USAGE, EXIT_PAUSED = 0, 1, 2, 3
KILL_WAIT_S = 10.0  # wall seconds for calls to end after the grace period's uuid_kill
ESL_LOST_LIMIT_S = 60.0  # wall seconds without a ready switch connection before giving up (no calls up)
WAIT_POLL_S = 0.05  # a simulated campaign's wait looks at the (held, stopped) virtual clock at least this often (wall)


@dataclass
class RunOptions:
    name: str
    runner_id: str
    max_concurrent: int | None = None  # overrides the campaign's for this runner's claims
    cps: float | None = None
    wait_s: float = 0.0
    speed: float = 1.0
    start: datetime | None = None


@dataclass
class RunResult:
    exit_code: int
    reason: str  # done | nothing_due | paused | stopped | database | switch
    message: str
    attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    next_due: datetime | None = None

    def as_json(self, name: str, runner: str) -> dict[str, Any]:
        return {"campaign": name, "runner": runner, "exit_code": self.exit_code, "reason": self.reason,
                "message": self.message, "attempts": self.attempts, "outcomes": self.outcomes,
                "next_due": iso(self.next_due)}


@dataclass
class LiveCall:
    claim: claims.Claim
    started_wall: float
    call_time: Any = None  # the call's CallTime in a simulated campaign (None: the wall's)
    seq: int = 0
    answered: bool = False
    opted_out: bool = False
    killed: bool = False


class CampaignRunner:
    """Works one campaign until it is done, nothing is due within ``wait_s``, it is paused, or it is stopped.

    A simulated campaign (app.simulate) runs it on simswitch's virtual clock, in lockstep with the calls:
    ``time_source`` gives the campaign's clock (epoch seconds of that clock), ``call_time_for(call_uuid)``
    each call's CallTime, and ``on_deadline(t)`` is told the next instant the runner acts at (a barrier the
    clock does not pass: the runner's own decisions then take no campaign time; None when it stops). Without
    them (``campaign run``), the wall clock times ``--speed``.
    """

    def __init__(self, settings: Settings, engine: Engine, options: RunOptions, rules_for: Callable[[Campaign], CampaignSettings],
                 progress: RunProgress, metrics: RunnerMetrics | None = None, *,
                 time_source: Callable[[], float] | None = None,
                 call_time_for: Callable[[str], Any] | None = None,
                 on_deadline: Callable[[datetime | None], None] | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.options = options
        self.rules_for = rules_for
        self.progress = progress
        self.metrics = metrics
        self.clock = CampaignClock(options.speed, options.start, time_source)
        self.call_time_for = call_time_for
        self.on_deadline = on_deadline
        self.esl_host = f"{settings.esl.host}:{settings.esl.port}"
        self.live: dict[str, LiveCall] = {}
        self.handled: set[str] = set()  # calls this process finished (their result may still be in the journal)
        self._ended: queue.Queue[tuple[str, Any, BaseException | None]] = queue.Queue()
        self._stop_reason: str | None = None
        self._stop_since: float | None = None
        self.attempts = 0
        self.outcomes: dict[str, int] = {}
        self.robot: Any = None
        self.client: Any = None
        self.recorder: CallRecorder | None = None
        self._registered = False

    # ---- the run -----------------------------------------------------------------------------

    def run(self) -> RunResult:
        try:
            self._prepare()
        except CampaignError as exc:
            self._shutdown()
            return RunResult(exc.exit_code, "usage" if exc.exit_code == EXIT_USAGE else "database", str(exc))
        except (SchemaError, JournalError) as exc:
            self._shutdown()
            return RunResult(EXIT_ERROR, "database", f"refusing to dial: {exc}")
        except _SwitchError as exc:
            self._shutdown()
            return RunResult(EXIT_ERROR, "switch", f"refusing to dial: {exc}")
        except Exception as exc:  # noqa: BLE001
            self._shutdown()
            if is_unavailable(exc):
                return RunResult(EXIT_ERROR, "database", f"refusing to dial: the database is unavailable: "
                                                         f"{explain(exc)}")
            raise
        previous = self._install_signals()
        try:
            result = self._loop()
        finally:
            self._restore_signals(previous)
            self._shutdown()
        result.attempts, result.outcomes = self.attempts, dict(self.outcomes)
        return result

    def _prepare(self) -> None:
        from callbot.robot.scenario.loader import ScenarioError, bundled_scenario, load_scenario

        ensure_schema(self.engine)  # before anything: a schema behind the code refuses to dial
        with Session(self.engine) as s:
            self.campaign = get_campaign(s, self.options.name)
        rules = self.rules_for(self.campaign)
        overrides = {}
        if self.options.max_concurrent is not None:
            overrides["max_concurrent"] = self.options.max_concurrent
        if self.options.cps is not None:
            overrides["calls_per_second"] = self.options.cps
        rules = effective(dataclasses.replace(self.settings, campaign=rules), overrides, "campaign run flags")
        # a lease guards against a dead process, a wall-clock matter: on a virtual clock it lasts lease_s wall seconds
        self.rules = dataclasses.replace(rules, lease_s=rules.lease_s * max(1.0, self.options.speed))
        self.windows = parse_windows(self.rules.windows)
        ref = self.campaign.scenario
        path = bundled_scenario(ref) if "/" not in ref and not ref.endswith(".toml") else ref
        try:
            self.scenario = load_scenario(path, rate=self.settings.robot.prompt_rate,
                                          prompts_dir=prompts_dir(self.settings))
        except ScenarioError as exc:
            raise CampaignError(f"campaign {self.campaign.name!r}: {exc}") from None
        journal = Journal(self.rules.journal_dir)
        journal.check()
        self.recorder = CallRecorder(self.engine, journal)
        replayed = self.recorder.replay_now()
        if replayed.error is not None:
            self.recorder.close()
            self.recorder = None
            raise CampaignError(f"refusing to dial: the journal in {journal.dir} cannot be replayed into the "
                                f"database ({replayed.error})", exit_code=EXIT_ERROR)
        if replayed.records:
            log.warning("journal replayed into the database", extra={"records": replayed.records,
                                                                     "files": replayed.files})
        # a write now: a read-only, full or locked database refuses to dial here, not after an answer
        claims.register_runner(self.engine, self.campaign.id, self.options.runner_id, self.esl_host,
                               self.clock.now(), self.rules.lease_s, None)
        self._registered = True
        self._connect_switch()
        claims.set_clock(self.engine, self.campaign.id, self.clock.as_json())
        # with a CallTime per call, robot.speed only scales the originate's wall-clock safety net: at 1 it is never
        # shorter than the ring in call time, however long the clock is held
        call_speed = 1.0 if self.call_time_for is not None else self.options.speed
        self.call_settings = dataclasses.replace(  # the call reads this campaign's rules (opt_out_dtmf)
            self.settings.replace(**{"robot.speed": call_speed, "robot.dial_timeout_s": self.rules.ring_timeout_s}),
            campaign=self.rules)
        self._reconcile()  # before anything is dialled again

    def _connect_switch(self) -> None:
        from callbot.robot.checks import StartupCheckError, require_ok, run_checks
        from callbot.robot.esl.client import EslClient, EslError
        from callbot.robot.shell.gevent_thread import GeventThread
        from callbot.robot.shell.one_call import audio_base_url

        self.audio_url = audio_base_url(self.settings)
        self.robot = GeventThread("campaign-robot")
        self.robot.start()

        def connect() -> Any:
            client = EslClient(self.settings.esl)
            client.connect()
            try:
                results = run_checks(self.settings, client)
                require_ok([r for r in results if r.name != "audio_server"])
            except BaseException:
                client.stop()
                raise
            for r in results:
                if r.name == "audio_server" and not r.ok:
                    log.warning("audio server check failed; calls go on without barge-in", extra={"detail": r.detail})
            if self.metrics is not None:
                client.on_reconnect.append(self.metrics.esl_reconnects.inc)
            return client

        try:
            self.client = self.robot.call(connect)
        except (StartupCheckError, EslError) as exc:
            raise _SwitchError(str(exc)) from None
        if self.clock.virtual and self.clock.source is None:
            self._align_clock()

    def _align_clock(self) -> None:
        """Run on the switch's own clock (simswitch's virtual one): ``api strftime %s`` (mod_dptools) is its epoch
        second; read until it ticks over, so that the campaign's instant matches the switch's to a few ms."""
        def switch_second() -> int:
            return int(self.robot.call(self.client.api, "strftime %s", timeout=30).strip())

        try:
            first = switch_second()
            deadline = time.monotonic() + 2.0 / self.options.speed + 1.0
            while (now := switch_second()) == first and time.monotonic() < deadline:
                time.sleep(min(0.002, 0.1 / self.options.speed))
        except Exception as exc:  # noqa: BLE001 - e.g. a switch without strftime: our own clock, from --start
            log.warning("could not read the switch's clock; the campaign keeps its own", extra={"error": str(exc)})
            return
        self.clock.align(datetime.fromtimestamp(now if now != first else first + 0.5, tz=timezone.utc))
        log.info("campaign clock follows the switch", extra={"now": iso(self.clock.now()), "speed": self.options.speed})

    # ---- the loop ----------------------------------------------------------------------------

    def _loop(self) -> RunResult:
        rules = self.rules
        total, remaining = self._counts()
        self.progress.start(self.campaign.name, total, total - remaining)
        renew_every = rules.lease_s / 3
        next_renew = self.clock.now() + timedelta(seconds=renew_every)
        next_reconcile = self.clock.now() + timedelta(seconds=rules.lease_s / 2)
        others_expire: datetime | None = self._reconcile()
        esl_down_since: float | None = None
        db_error: str | None = None
        while True:
            self._drain_ended()
            now = self.clock.now()
            if now >= next_renew:
                try:
                    claims.renew(self.engine, self.campaign.id, self.options.runner_id, self.esl_host,
                                 list(self.live), now, rules.lease_s)
                    self._check_paused()
                except Exception as exc:  # noqa: BLE001
                    if not is_unavailable(exc):
                        raise
                    db_error = db_error or explain(exc)
                    self._stop("database")
                next_renew = now + timedelta(seconds=renew_every)
            if self._stop_reason is not None:
                if not self.live:
                    break
                self._enforce_grace()
                self._wait_wall(0.2)
                continue
            if not self.client.ready:
                esl_down_since = esl_down_since or time.monotonic()
                if time.monotonic() - esl_down_since > ESL_LOST_LIMIT_S and not self.live:
                    return RunResult(EXIT_ERROR, "switch", f"lost the switch at {self.esl_host} for more than "
                                     f"{ESL_LOST_LIMIT_S:g} s; stopped")
                self._wait_wall(0.5)
                continue
            esl_down_since = None
            if now >= next_reconcile or (others_expire is not None and now >= others_expire):
                others_expire = self._reconcile()
                next_reconcile = now + timedelta(seconds=rules.lease_s / 2)
            try:
                step = claims.claim_one(self.engine, self.campaign.id, self.options.runner_id, self.esl_host, now,
                                        rules, self.windows, rules.max_concurrent, rules.cps)
            except Exception as exc:  # noqa: BLE001
                if not is_unavailable(exc):
                    raise
                db_error = db_error or explain(exc)
                log.error("database unavailable: no more claims", extra={"error": db_error})
                self._stop("database")
                continue
            if step.claim is not None:
                self._dial(step.claim)
                continue
            if step.paused:
                self._stop("paused")
                continue
            if step.examined:
                continue
            if step.wait_s is not None:
                self._wait_campaign(step.wait_s)
                continue
            if step.full or self.live:
                self._wait_campaign(rules.poll_s)
                continue
            left, due = next_due(self.engine, self.campaign, rules, now)
            if others_expire is not None:  # another runner's call on our switch: reconciled if its lease expires
                due = others_expire if due is None else min(due, others_expire)
            if not left:
                self.progress.note(f"campaign {self.campaign.name}: every contact is final")
                return RunResult(EXIT_DONE, "done", "every contact is final")
            if due is not None and (due - now).total_seconds() <= self.options.wait_s:
                self._wait_campaign(max(0.0, min((due - now).total_seconds(), rules.poll_s * 10)) or rules.poll_s)
                continue
            message = (f"nothing due within {self.options.wait_s:g} s; next contact due at {iso(due)}" if due else
                       f"nothing due: {left} contact(s) are in calls of other runners")
            self.progress.note(f"campaign {self.campaign.name}: {message}")
            return RunResult(EXIT_DONE, "nothing_due", message, next_due=due)
        reason = self._stop_reason or "stopped"
        if reason == "paused":
            return RunResult(EXIT_PAUSED, "paused", f"campaign {self.campaign.name} is paused")
        if reason == "database":
            return RunResult(EXIT_ERROR, "database", f"the database became unavailable: {db_error}; results of the "
                             f"calls that were up are in the journal ({self.rules.journal_dir}) and are replayed by "
                             "the next run")
        return RunResult(EXIT_DONE, "stopped", "stopped by a signal; live calls finished")

    def _counts(self) -> tuple[int, int]:
        from sqlalchemy import func, select

        from callbot.robot.store.models import FINAL_CONTACT_STATES, Contact

        with Session(self.engine) as s:
            rows = dict(s.execute(select(Contact.state, func.count()).where(Contact.campaign_id == self.campaign.id)
                                  .group_by(Contact.state)).all())
        total = sum(rows.values())
        return total, total - sum(rows.get(st, 0) for st in FINAL_CONTACT_STATES)

    def _check_paused(self) -> None:
        with Session(self.engine) as s:
            campaign = s.get(Campaign, self.campaign.id)
            if campaign is None or campaign.paused:
                self._stop("paused")

    # ---- calls -------------------------------------------------------------------------------

    def _dial(self, claim: claims.Claim) -> None:
        """The attempt row is committed (claim_one); now the originate may go out."""
        CallSession = call_session_class()

        call_time = self.call_time_for(claim.call_uuid) if self.call_time_for is not None else None
        live = LiveCall(claim, time.monotonic(), call_time)
        self.live[claim.call_uuid] = live
        self.attempts += 1
        if self.metrics is not None:
            self.metrics.originates.inc()
            self.metrics.in_progress.set(len(self.live))
        on_entry = self._entry_writer(live)

        paced = {"call_time": call_time} if call_time is not None else {}

        def place() -> Any:
            session = CallSession(self.client, self.scenario, self.call_settings, claim.dial_string,
                                  audio_url=self.audio_url, call_uuid=claim.call_uuid, on_entry=on_entry, **paced)
            return session.run()

        def ended(f: Any, u: str = claim.call_uuid) -> None:
            if self.on_deadline is not None:  # the runner acts on it now: the clock waits for it
                self.on_deadline(self.clock.now())
            self._ended.put((u, None if f.exception() else f.result(), f.exception()))

        future = self.robot.submit(place)
        future.add_done_callback(ended)

    def _entry_writer(self, live: LiveCall) -> Callable[[dict[str, Any]], None]:
        """The call's ``on_entry``: each timeline row goes to the recorder as it happens (in the call's greenlet)."""
        recorder = self.recorder
        assert recorder is not None
        uuid, number = live.claim.call_uuid, live.claim.number

        def on_entry(row: dict[str, Any]) -> None:
            recorder.submit(records.event(uuid, live.seq, row))
            live.seq += 1
            if not live.answered and answered_row(row):
                live.answered = True
                recorder.submit(records.attempt(uuid, answered_at=self.clock.now()))
            elif first_audio_row(row) and row.get("t") is not None:
                recorder.submit(records.attempt(uuid, first_audio_s=row["t"]))
            if not live.opted_out and opt_out_row(row, self.rules.opt_out_dtmf):  # DNC during the call, not after it
                live.opted_out = True
                recorder.submit(records.dnc(number, f"opt_out:{self.campaign.name}", self.clock.now()))
        return on_entry

    def _drain_ended(self) -> None:
        while True:
            try:
                uuid, record, error = self._ended.get_nowait()
            except queue.Empty:
                return
            self._finish(uuid, record, error)

    def _finish(self, uuid: str, record: Any, error: BaseException | None) -> None:
        from callbot.robot.report import build_report

        live = self.live.pop(uuid)
        self.handled.add(uuid)
        if self.metrics is not None:
            self.metrics.in_progress.set(len(self.live))
        if live.call_time is not None:  # the call is over: it holds its clock no more
            live.call_time.deadline(None)
            live.call_time.busy(False)
        if error is not None:
            log.error("call runner failed; reconciling the call with the switch",
                      extra={"call_uuid": uuid, "error": f"{type(error).__name__}: {error}"})
            self._reconcile_one(uuid)
            return
        now = self.clock.now()
        report = build_report(record)
        call = summarize(report, self.rules.opt_out_dtmf)
        voicemail = self.scenario.voicemail
        outcome = outcome_of(call, voicemail.disposition if voicemail.on_machine == "leave_message" else None)
        abandoned = is_abandoned(call, self.rules.abandon_after_s)
        change = after_attempt(outcome, live.claim.attempt_no, self.rules.max_attempts, self.rules.retry_after, now)
        fields = {"ended_at": now, "outcome": outcome, "abandoned": abandoned, "disposition": report.get("disposition"),
                  "amd": report.get("amd"), "amd_cause": report.get("amd_cause"),
                  "amd_decided_at_s": report.get("amd_decided_at_s"), "hangup_by": report["hangup"].get("by"),
                  "hangup_cause": report["hangup"].get("cause"), "flags": report.get("flags", []),
                  "intents": report.get("intents", []), "barge_ins": report.get("barge_ins", []),
                  "first_audio_s": call.first_audio_s}
        if call.answered and not live.answered:
            fields["answered_at"] = now
        contact = {"state": change.state, "next_due_at": change.next_due_at, "reason": change.reason,
                   "last_outcome": outcome}
        assert self.recorder is not None
        if outcome == "opted_out" and not live.opted_out:
            self.recorder.submit(records.dnc(live.claim.number, f"opt_out:{self.campaign.name}", now))
        where = self.recorder.submit(records.finish(uuid, fields, report.get("transcripts", []), contact), wait=True)
        assert where is not None
        where.result(60)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self.metrics is not None:
            self.metrics.outcome(outcome)
            if abandoned:
                self.metrics.abandoned.inc()
            if call.answered and call.amd != "machine":
                self.metrics.answered_by_person.inc()
            if call.amd:
                self.metrics.amd(call.amd)
            for _ in report.get("barge_ins", []):
                self.metrics.barge_ins.inc()
        total, remaining = self._counts_safe()
        self.progress.attempt(live.claim.number, live.claim.attempt_no, outcome,
                              {"final": total - remaining, "live": len(self.live), **self.outcomes})

    def _counts_safe(self) -> tuple[int, int]:
        try:
            return self._counts()
        except Exception:  # noqa: BLE001 - progress only
            return 0, 0

    # ---- reconciliation ----------------------------------------------------------------------

    def _reconcile(self) -> datetime | None:
        """Attempts on our switch whose lease expired, or whose runner is known dead: ask the switch, hang up
        what is still up, record them. Returns when the next other runner's lease on this switch expires."""
        now = self.clock.now()
        later: datetime | None = None
        for attempt in claims.in_flight(self.engine, self.campaign.id, self.esl_host, [*self.live, *self.handled]):
            if attempt.orphaned(now, self._runner_gone):
                self._reconcile_one(attempt.call_uuid)
            elif attempt.lease_expires_at is not None:
                later = attempt.lease_expires_at if later is None else min(later, attempt.lease_expires_at)
        return later

    def _runner_gone(self, runner_id: str | None) -> bool:
        """Our own id from an earlier run (none of our live calls is asked about), or a dead ``HOST:PID``."""
        return runner_id == self.options.runner_id or claims.runner_process_gone(runner_id)

    def _reconcile_one(self, uuid: str) -> None:
        from callbot.robot.esl.commands import kill_command

        try:
            exists = self.robot.call(self.client.api, f"uuid_exists {uuid}", timeout=30).strip() == "true"
            if exists:
                self.robot.call(self.client.api, kill_command(uuid, "NORMAL_CLEARING"), timeout=30)
        except Exception as exc:  # noqa: BLE001 - cannot ask the switch: leave it for the next pass
            log.warning("reconciliation postponed: the switch did not answer", extra={"call_uuid": uuid,
                                                                                      "error": str(exc)})
            return
        found = "hung_up" if exists else "gone"
        if claims.close_orphan(self.engine, uuid, found, self.clock.now(), self.rules):
            log.warning("attempt reconciled as interrupted", extra={"call_uuid": uuid, "found": found})
            self.outcomes["interrupted"] = self.outcomes.get("interrupted", 0) + 1
            if self.metrics is not None:
                self.metrics.outcome("interrupted")

    # ---- stopping ----------------------------------------------------------------------------

    def _stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
            self._stop_since = time.monotonic()
            if self.live:
                self.progress.note(f"{reason}: no new calls; waiting for {len(self.live)} live call(s) to finish")

    def _enforce_grace(self) -> None:
        """Past ``stop_grace_s`` (campaign seconds), hang up what is left; past that too, give up on them."""
        from callbot.robot.esl.commands import kill_command

        assert self._stop_since is not None
        waited = time.monotonic() - self._stop_since
        grace = self.clock.wall_s(self.rules.stop_grace_s)
        if waited < grace:
            return
        for uuid, live in self.live.items():
            if not live.killed:
                live.killed = True
                try:
                    self.robot.call(self.client.api, kill_command(uuid, "NORMAL_CLEARING"), timeout=10)
                except Exception:  # noqa: BLE001 - reconciliation will find it
                    pass
        if waited > grace + KILL_WAIT_S:
            log.error("calls did not end after uuid_kill; their leases will expire and be reconciled",
                      extra={"calls": list(self.live)})
            self.live.clear()

    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: self._stop("signal"))
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _wait_wall(self, seconds: float) -> None:
        """Sleep, but wake as soon as a call ends."""
        if self.on_deadline is not None:
            self._wait_until(self.clock.now() + timedelta(seconds=seconds * self.options.speed))
            return
        try:
            item = self._ended.get(timeout=max(0.001, seconds))
        except queue.Empty:
            return
        self._finish(*item)

    def _wait_campaign(self, seconds: float) -> None:
        if self.on_deadline is not None:
            self._wait_until(self.clock.now() + timedelta(seconds=seconds))
            return
        self._wait_wall(min(self.clock.wall_s(seconds), 0.5))

    def _wait_until(self, until: datetime) -> None:
        """A simulated campaign's wait: ``until`` is a barrier, so the clock stops there and the runner acts at that
        instant exactly, however late its thread wakes; a call that ends first wakes it, and the clock waits at
        that instant (``ended`` moved the barrier) while the runner records the call and decides what is next."""
        assert self.on_deadline is not None
        if self._ended.empty():
            self.on_deadline(until)
        while True:
            left = (until - self.clock.now()).total_seconds()
            if left <= 0:
                break
            try:
                item = self._ended.get(timeout=min(WAIT_POLL_S, max(0.001, self.clock.wall_s(left))))
            except queue.Empty:
                continue
            self.on_deadline(self.clock.now())
            self._finish(*item)
            return
        self.on_deadline(self.clock.now())

    def _shutdown(self) -> None:
        if self.on_deadline is not None:
            self.on_deadline(None)
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        if self._registered:
            self._registered = False
            try:
                claims.unregister_runner(self.engine, self.campaign.id, self.options.runner_id, self.clock.now(),
                                         self.clock.as_json(frozen=True))
            except Exception as exc:  # noqa: BLE001
                log.warning("could not mark the runner stopped; its lease expires by itself", extra={"error": str(exc)})
        if self.client is not None:
            try:
                self.robot.call(self.client.stop, timeout=10)
            except Exception:  # noqa: BLE001
                pass
        self.client = None
        if self.robot is not None:
            self.robot.stop()
            self.robot = None
        self.progress.close()


def call_session_class() -> Any:
    """The robot's call runner: ``CallSession(client, scenario, settings, dest, audio_url=, call_uuid=, on_entry=)``."""
    try:
        from callbot.robot.shell.session import CallSession
    except ImportError:  # before the call moved to a sans-I/O core with a gevent shell
        from callbot.robot.call.session import CallSession  # type: ignore[no-redef]
    return CallSession


def prompts_dir(settings: Settings) -> Any:
    """``[prompts] dir`` (shared with the audio server), or the robot's own setting where that section is absent."""
    prompts = getattr(settings, "prompts", None)
    return prompts.path() if prompts is not None else getattr(settings.robot, "prompts_dir", None)


class _SwitchError(RuntimeError):
    """The switch is unreachable or failed its checks."""
