"""The decode queue's policy: finals first and never dropped, partials bounded, stale partials dropped."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from callbot.audio_server.stt.queue import DecodeQueue
from callbot.audio_server.stt.stage import DecodeJob

_seq = iter(range(1, 10_000))


def job(kind: str, stream: str = "a", segment: int = 1) -> DecodeJob:
    return DecodeJob(stream, segment, 0, kind, next(_seq), np.zeros(160, np.int16), 16000, 0.0, 0.01, None, None)


def test_finals_are_served_before_partials_each_in_arrival_order() -> None:
    q = DecodeQueue(10)
    p1, f1, p2, f2 = job("partial", "a"), job("final", "b"), job("partial", "c"), job("final", "d")
    for j in (p1, f1, p2, f2):
        assert q.push(j) == []
    assert [q.pop() for _ in range(5)] == [f1, f2, p1, p2, None]


def test_a_full_queue_drops_the_oldest_partial_never_a_final() -> None:
    q = DecodeQueue(3)
    p1, p2, p3 = job("partial", "a"), job("partial", "b"), job("partial", "c")
    for j in (p1, p2, p3):
        q.push(j)
    p4 = job("partial", "d")
    assert q.push(p4) == [p1]
    finals = [job("final", f"s{i}") for i in range(5)]
    dropped = []
    for f in finals:
        dropped += q.push(f)
    assert dropped == [p2, p3, p4]  # partials made room for finals ...
    assert len(q) == 5  # ... and finals are kept even beyond queue_max
    assert q.push(job("partial", "e"))[0].kind == "partial"  # a partial finds only finals: it is dropped
    assert [q.pop() for _ in range(6)] == [*finals, None]


def test_a_final_drops_the_queued_partial_of_its_own_segment() -> None:
    q = DecodeQueue(10)
    mine, other = job("partial", "a", 1), job("partial", "a", 2)
    q.push(mine)
    q.push(other)
    final = job("final", "a", 1)
    assert q.push(final) == [mine]
    assert [q.pop(), q.pop(), q.pop()] == [final, other, None]


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="queue_max"):
        DecodeQueue(0)


def test_pop_can_skip_partials_to_keep_a_worker_for_finals() -> None:
    q = DecodeQueue(10)
    partial = job("partial")
    q.push(partial)
    assert q.pop(partials=False) is None
    final = job("final", "b")
    q.push(final)
    assert q.pop(partials=False) is final and q.pop() is partial


def test_an_early_partial_goes_first_and_may_use_the_finals_worker() -> None:
    """A decode issued in a pause is likely the segment's final: it must not wait behind partials."""
    q = DecodeQueue(10)
    p1, p2 = job("partial", "a"), job("partial", "b")
    early = dataclasses.replace(job("partial", "c"), early=True)
    for j in (p1, p2, early):
        q.push(j)
    assert q.pop(partials=False) is early  # the worker kept for finals takes it
    assert q.pop(partials=False) is None  # but not an ordinary partial
    assert [q.pop(), q.pop()] == [p1, p2]


def test_a_final_that_shares_a_running_decode_still_drops_its_segments_queued_partials() -> None:
    q = DecodeQueue(10)
    mine, other = job("partial", "a", 1), job("partial", "b", 1)
    q.push(mine)
    q.push(other)
    assert q.drop_stale(job("final", "a", 1)) == [mine]  # the final itself is not queued
    assert [q.pop(), q.pop()] == [other, None]
