"""Scenario checks beyond types: prompt paths the switch can play, loops no reply can leave, and each key's line.

- A prompt goes to the switch as ``uuid_broadcast <uuid> <path>`` and to the audio server as a
  playback marker, so its resolved path must pass both robot.esl.commands.check_prompt_path (the
  switch splits on spaces, runs ``app::arg``, expands ``${…}``) and callbot.stream.check_prompt_file
  (send_text mangles quotes), and stay inside the scenario's audio directory or the prompts directory.
- The steps form a graph: a step with ``on`` branches on the reply (it listens), a step with
  ``next`` goes on, a step with a ``disposition`` ends the call. A loop is allowed only if one of its
  listening steps has a branch out of it; a loop of ``next`` alone would play until max_call_s.
- tomllib gives no positions, so :func:`key_lines` finds the line of each key in the text.
"""

from __future__ import annotations

import heapq
import re
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from callbot.robot.esl.commands import check_prompt_path
from callbot.stream import MarkerError, check_prompt_file


class StepLike(Protocol):
    name: str
    branches: Mapping[str, str]
    next: str | None
    disposition: str | None
    duration_s: float


def prompt_problems(prompt: Path, audio_dir: Path, prompts_dir: Path) -> list[str]:
    """What stops the switch (or the audio server's marker) from taking ``prompt``; [] when nothing does."""
    problems = []
    roots = [audio_dir.resolve(), prompts_dir.resolve()]
    if not any(prompt == root or prompt.is_relative_to(root) for root in roots):
        problems.append(f"{prompt} is outside the audio directory {roots[0]} and the prompts directory "
                        f"{roots[1]}; give a file name inside <audio_dir>/<rate>/")
    try:
        check_prompt_path(str(prompt))
    except ValueError as exc:
        return [*problems, f"the switch cannot play it: {exc}"]
    marker = prompt.relative_to(roots[1]).as_posix() if prompt.is_relative_to(roots[1]) else prompt.name
    try:
        check_prompt_file(marker)  # implied by the switch's rules today; kept so the two cannot drift apart
    except MarkerError as exc:
        problems.append(f"the audio server cannot be told of it: {exc}")
    return problems


def _edges(step: StepLike) -> list[tuple[str, str]]:
    """(key, target) pairs the call can follow from ``step``, as robot.call.Call does: branches win, then a
    disposition ends the call, else ``next``."""
    if step.branches:
        return [(f"on.{outcome}", target) for outcome, target in step.branches.items()]
    if step.disposition is None and step.next is not None:
        return [("next", step.next)]
    return []


def _components(steps: Mapping[str, StepLike]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), members in file order."""
    order = {name: i for i, name in enumerate(steps)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in steps:
        if root in index:
            continue
        work = [(root, iter([t for _, t in _edges(steps[root]) if t in steps]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter([t for _, t in _edges(steps[child]) if t in steps])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                out.append(sorted(members, key=order.__getitem__))
    return out


def loop_problems(steps: Mapping[str, StepLike]) -> list[tuple[str, str]]:
    """(key, message) for every loop of steps that no reply can leave."""
    problems = []
    for members in _components(steps):
        first = steps[members[0]]
        looping = len(members) > 1 or any(t == first.name for _, t in _edges(first))
        if not looping:
            continue
        inside = set(members)
        names = " -> ".join([*members, members[0]])
        listening = [steps[m] for m in members if steps[m].branches]
        if not listening:
            problems.append((f"steps.{first.name}.next",
                             f"steps {names} loop with no listening step: the call would play them until "
                             "max_call_s; end one with a `disposition`, or branch on the reply with `on`"))
            continue
        if any(t in steps and t not in inside for s in listening for t in s.branches.values()):
            continue
        heard = ", ".join(s.name for s in listening)
        problems.append((f"steps.{listening[0].name}.on",
                         f"every reply to {heard} leads back into the loop {names}: no caller can end the "
                         "call; send at least one outcome to a step that ends it"))
    return problems


def shortest_run(steps: Mapping[str, StepLike], start: str) -> tuple[float, list[str]] | None:
    """The quickest way from ``start`` to a step that ends the call, in seconds of prompts (replies taken as
    instant), with the steps it goes through; None when there is none."""
    if start not in steps:
        return None
    queue: list[tuple[float, int, str, tuple[str, ...]]] = [(steps[start].duration_s, 0, start, (start,))]
    done: set[str] = set()
    tie = 0
    while queue:
        seconds, _, name, path = heapq.heappop(queue)
        if name in done:
            continue
        done.add(name)
        step = steps[name]
        if not _edges(step):
            return seconds, list(path)
        for _, target in _edges(step):
            if target in steps and target not in done:
                tie += 1
                heapq.heappush(queue, (seconds + steps[target].duration_s, tie, target, (*path, target)))
    return None


# ---- where each key is ----------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?(?P<name>[^\[\]]+)\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*(?P<key>(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
                  r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")
_INLINE_KEY = re.compile(r"[{,]\s*(?P<key>[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*=")


def _dotted(text: str) -> list[str]:
    parts = re.findall(r"\"[^\"]*\"|'[^']*'|[^.\s]+", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def key_lines(text: str) -> dict[str, int]:
    """``{"steps.greeting.prompt": 21, "steps.greeting": 19, ...}``: the 1-based line of every table and key
    (keys of one-line inline tables included); lines inside multi-line strings are skipped."""
    lines: dict[str, int] = {}
    table: list[str] = []
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        header = _HEADER.match(line)
        if header is not None:
            table = _dotted(header.group("name"))
            lines.setdefault(".".join(table), number)
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        path = [*table, *_dotted(key.group("key"))]
        lines.setdefault(".".join(path), number)
        value = line[key.end():]
        for inner in _INLINE_KEY.finditer(value):
            lines.setdefault(".".join([*path, *_dotted(inner.group("key"))]), number)
        for quote in ('"""', "'''"):
            if value.count(quote) % 2 == 1:
                in_string = quote
    return lines


def line_of(problem: str, lines: Mapping[str, int]) -> int | None:
    """The line a problem (``"<key>: message"``) points at: its key's, else the nearest enclosing table's."""
    key = problem.split(": ", 1)[0].strip(".")
    parts = key.split(".")
    while parts:
        found = lines.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    return None


def located(problems: Sequence[str], text: str) -> list[int | None]:
    """The line of each problem in the scenario ``text`` (None where no key says where)."""
    lines = key_lines(text)
    return [line_of(p, lines) for p in problems]
