"""Timing for the speed studies: rates of several variants measured in turn, so that the machine's
drift (another job, clock changes) falls on every variant alike."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext


def interleaved_rates(fns: dict[str, Callable[[], int]], repeats: int, context=None,
                      alternate: bool = True) -> dict[str, float]:
    """``fns``: name -> callable returning the items it processed. Each is called once to warm up, then
    ``repeats`` times, the names in turn (their order reversed on every other repeat when ``alternate``:
    A B C C B A A B C ...). Returns name -> median items per second. ``context(name)``, if given, is a
    context manager that every call of that name runs inside (e.g. a switch of the code path)."""
    context = context or (lambda name: nullcontext())
    names = list(fns)
    for name in names:
        with context(name):
            fns[name]()
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names[::-1] if alternate and r % 2 else names):
            with context(name):
                t0 = time.perf_counter()
                n = fns[name]()
                rates[name].append(n / (time.perf_counter() - t0))
    return {name: statistics.median(v) for name, v in rates.items()}


def seconds_per_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> float:
    """Mean seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats
