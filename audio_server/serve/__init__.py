"""The audio server on every core: N worker processes on one port (SO_REUSEPORT) under a supervisor.

``board``: the shared row of counters per worker that ``/healthz`` reads. ``worker``: one worker
process, today's AudioServer on a port it shares. ``supervisor``: holds the port, starts, restarts
and stops the workers, and serves ``/metrics`` and ``/healthz`` for all of them.
"""
