"""Failed-login throttling: free attempts, doubling capped delays, resets, per-client counts."""

from __future__ import annotations

import re

import pytest

from tardis_common import errors
from tardis_common.auth import LoginThrottle
from tardis_common.clock import FixedClock

START_NS = 1_700_000_000 * 1_000_000_000


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START_NS)


def _wait_s(throttle: LoginThrottle, client: str = "host", source: str = "10.0.0.1") -> int:
    """The advertised wait, or 0 if an attempt may go ahead now."""
    try:
        throttle.check(client, source)
    except errors.Throttled as exc:
        found = re.search(r"try again in (\d+) s$", str(exc))
        assert found, str(exc)
        return int(found.group(1))
    return 0


def _fail(throttle: LoginThrottle, times: int, client: str = "host", source: str = "10.0.0.1") -> None:
    for _ in range(times):
        throttle.failed(client, source)


def test_free_attempts(clock: FixedClock) -> None:
    throttle = LoginThrottle(clock)
    for _ in range(3):
        assert _wait_s(throttle) == 0
        throttle.failed("host", "10.0.0.1")
    assert _wait_s(throttle) == 0  # three failures cost nothing
    throttle.failed("host", "10.0.0.1")
    with pytest.raises(
        errors.Throttled, match=r"^too many failed logins for client host from 10.0.0.1; try again in 1 s$"
    ):
        throttle.check("host", "10.0.0.1")


def test_delay_doubles_then_caps(clock: FixedClock) -> None:
    throttle = LoginThrottle(clock, free_attempts=3, base_delay_s=1.0, max_delay_s=30.0)
    _fail(throttle, 3)
    waits = []
    for _ in range(8):
        throttle.failed("host", "10.0.0.1")
        waits.append(_wait_s(throttle))
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]


def test_delay_passes(clock: FixedClock) -> None:
    throttle = LoginThrottle(clock)
    _fail(throttle, 6)  # fourth, fifth, sixth failures: delay 4 s
    assert _wait_s(throttle) == 4
    clock.advance(2.5)
    assert _wait_s(throttle) == 2  # rounded up
    clock.advance(1.5)
    assert _wait_s(throttle) == 0


def test_never_a_lockout(clock: FixedClock) -> None:
    throttle = LoginThrottle(clock, max_delay_s=30.0)
    _fail(throttle, 1000)
    assert _wait_s(throttle) == 30
    clock.advance(30)
    assert _wait_s(throttle) == 0


def test_success_resets(clock: FixedClock) -> None:
    throttle = LoginThrottle(clock)
    _fail(throttle, 5)
    clock.advance(2)
    throttle.succeeded("host", "10.0.0.1")
    assert _wait_s(throttle) == 0
    _fail(throttle, 3)
    assert _wait_s(throttle) == 0  # the free attempts are back


def test_sources_are_independent(clock: FixedClock) -> None:
    throttle = LoginThrottle(clock)
    _fail(throttle, 6, source="10.0.0.1")
    assert _wait_s(throttle, source="10.0.0.1") == 4
    assert _wait_s(throttle, source="10.0.0.2") == 0
    assert _wait_s(throttle, client="other", source="10.0.0.1") == 0


def test_per_client_threshold_across_sources(clock: FixedClock) -> None:
    throttle = LoginThrottle(clock, free_attempts=3, client_free_attempts=10)
    for i in range(10):  # one failure each from ten addresses: no pair is throttled
        throttle.failed("host", f"10.0.1.{i}")
    assert _wait_s(throttle, source="10.0.2.1") == 0
    throttle.failed("host", "10.0.1.99")
    expected = r"^too many failed logins for client host from many addresses; try again in 1 s$"
    with pytest.raises(errors.Throttled, match=expected):
        throttle.check("host", "10.0.2.1")
    throttle.failed("host", "10.0.1.100")
    assert _wait_s(throttle, source="10.0.2.2") == 2
    assert _wait_s(throttle, client="other", source="10.0.2.2") == 0
    throttle.succeeded("host", "192.168.0.5")
    assert _wait_s(throttle, source="10.0.2.2") == 0


def test_longer_of_the_two_waits_is_reported(clock: FixedClock) -> None:
    throttle = LoginThrottle(clock, free_attempts=3, client_free_attempts=4)
    _fail(throttle, 5, source="10.0.0.1")  # pair: 2 s; client: 1 s
    with pytest.raises(errors.Throttled, match=r"from 10.0.0.1; try again in 2 s"):
        throttle.check("host", "10.0.0.1")
    with pytest.raises(errors.Throttled, match=r"from many addresses; try again in 1 s"):
        throttle.check("host", "10.0.0.2")


def test_old_failures_forgotten(clock: FixedClock) -> None:
    throttle = LoginThrottle(clock, forget_after_s=3600)
    _fail(throttle, 3)
    clock.advance(3600)
    throttle.failed("host", "10.0.0.1")
    assert _wait_s(throttle) == 0


def test_bounded_memory_evicts_oldest(clock: FixedClock) -> None:
    throttle = LoginThrottle(clock, capacity=5)
    _fail(throttle, 6, client="first", source="10.0.0.1")
    assert _wait_s(throttle, client="first", source="10.0.0.1") == 4
    for i in range(5):
        clock.advance(0.001)
        throttle.failed(f"c{i}", f"10.0.0.{i}")
    assert throttle.tracked() == (5, 5)
    assert _wait_s(throttle, client="first", source="10.0.0.1") == 0  # evicted
    _fail(throttle, 4, client="c4", source="10.0.0.4")
    assert _wait_s(throttle, client="c4", source="10.0.0.4") == 2  # recent entries kept
