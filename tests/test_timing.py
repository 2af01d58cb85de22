"""vgg.timing: the speed studies' interleaved rates, on a clock the test controls."""
from contextlib import contextmanager

import pytest

from vgg import timing


@pytest.fixture
def clock(monkeypatch):
    """A perf_counter that advances only when a fake job 'works'."""
    now = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    return now


def test_interleaved_rates_alternate_the_order_and_take_the_median(clock):
    calls, inside = [], []
    seconds = {"a": iter([9, 1, 2, 3]), "b": iter([9, 4, 4, 8])}  # first of each: the warm-up

    def job(name):
        def run():
            calls.append(name)
            clock[0] += next(seconds[name])
            return 12
        return run

    @contextmanager
    def context(name):
        inside.append(name)
        yield

    rates = timing.interleaved_rates({"a": job("a"), "b": job("b")}, repeats=3, context=context)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B, B A, A B
    assert inside == calls  # every call, warm-up included, inside its name's context
    assert rates == {"a": 6.0, "b": 3.0}  # medians of 12/1, 12/2, 12/3 and 12/4, 12/4, 12/8
    calls.clear()
    seconds = {"a": iter([1] * 4), "b": iter([1] * 4)}
    timing.interleaved_rates({"a": job("a"), "b": job("b")}, repeats=3, alternate=False)
    assert calls == ["a", "b"] * 4


def test_seconds_per_call_leaves_out_the_warm_up(clock):
    durations = iter([100, 100, 2, 4])

    def fn():
        clock[0] += next(durations)

    assert timing.seconds_per_call(fn, repeats=2, warmup=2) == 3.0
