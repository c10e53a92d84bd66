"""The breaker's rules (idenfy/breaker.py) on a clock the test moves."""

from __future__ import annotations

from idenfy_stepup.idenfy.breaker import Breaker, Pass, State, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call(breaker: Breaker, verdict: Verdict) -> Pass:
    ticket = breaker.admit()
    assert ticket is not None
    breaker.settle(ticket, verdict)
    return ticket


def test_an_answer_between_failures_starts_the_count_again() -> None:
    breaker = Breaker(3, 30, 15, Clock())
    for _ in range(5):
        call(breaker, Verdict.FAILED)
        call(breaker, Verdict.FAILED)
        call(breaker, Verdict.ANSWERED)
    assert breaker.state is State.CLOSED


def test_failures_spread_wider_than_the_window_do_not_open_it() -> None:
    clock = Clock()
    breaker = Breaker(3, 30, 15, clock)
    for _ in range(6):
        call(breaker, Verdict.FAILED)
        clock.now += 16
    assert breaker.state is State.CLOSED
    clock.now += 100
    for _ in range(3):  # three within the window
        call(breaker, Verdict.FAILED)
    assert breaker.state is State.OPEN and breaker.admit() is None


def test_a_cancelled_probe_frees_the_probe_slot() -> None:
    clock = Clock()
    breaker = Breaker(1, 30, 15, clock)
    call(breaker, Verdict.FAILED)
    clock.now += 15
    probe = breaker.admit()
    assert probe is not None and probe.probe and breaker.admit() is None
    breaker.abandon(probe)  # the caller went away: no verdict
    assert breaker.state is State.HALF_OPEN
    again = breaker.admit()
    assert again is not None and again.probe


def test_an_answer_from_a_call_made_before_it_opened_does_not_close_it() -> None:
    breaker = Breaker(1, 30, 15, Clock())
    early = breaker.admit()
    assert early is not None
    call(breaker, Verdict.FAILED)
    breaker.settle(early, Verdict.ANSWERED)
    assert breaker.state is State.OPEN


def test_a_refusal_opens_it_at_once_and_zero_failures_turns_it_off() -> None:
    breaker = Breaker(5, 30, 15, Clock())
    call(breaker, Verdict.REFUSED)
    assert breaker.state is State.OPEN and breaker.reason is Verdict.REFUSED
    off = Breaker(0, 30, 15, Clock())
    for _ in range(10):
        call(off, Verdict.FAILED)
    call(off, Verdict.REFUSED)
    assert off.state is State.CLOSED
