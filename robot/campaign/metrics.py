"""Prometheus metrics of a campaign runner (``campaign run --metrics-port``), on their own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class RunnerMetrics:
    """Calls in progress, originates, outcomes, abandonment, barge-ins, AMD verdicts, ESL reconnects."""

    def __init__(self, campaign: str, runner: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"campaign": campaign, "runner": runner}
        names = list(labels)

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, [*names, *extra], registry=self.registry)

        self.in_progress = Gauge("callbot_calls_in_progress", "Calls this runner has up now", names,
                                 registry=self.registry).labels(**labels)
        self.originates = counter("callbot_originates", "Originates sent (attempt rows claimed)").labels(**labels)
        self._outcomes = counter("callbot_outcomes", "Attempts ended, by outcome", ("outcome",))
        self.abandoned = counter("callbot_abandoned_calls", "Answered calls whose first robot audio came late").labels(
            **labels)
        self.answered_by_person = counter("callbot_answered_by_person_calls",
                                          "Answered calls not judged a machine").labels(**labels)
        self.barge_ins = counter("callbot_barge_ins", "Barge-ins acted on").labels(**labels)
        self._amd = counter("callbot_amd_verdicts", "AMD verdicts, by result", ("result",))
        self.esl_reconnects = counter("callbot_esl_reconnects", "ESL reconnections").labels(**labels)
        self._labels = labels

    def outcome(self, outcome: str) -> None:
        self._outcomes.labels(**self._labels, outcome=outcome).inc()

    def amd(self, result: str) -> None:
        self._amd.labels(**self._labels, result=result).inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose ``/metrics`` on ``host:port`` (a daemon thread)."""
        start_http_server(port, addr=host, registry=self.registry)
