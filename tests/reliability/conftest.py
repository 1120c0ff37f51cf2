"""Shared bookkeeping of the reliability suites (issue 8): each suite counts its cases and
writes ``tests/reliability/results/<suite>.json`` at the end of the session, which
``scripts/reliability_report.py`` renders into docs/reliability.md.

Two ways to join a suite, both counting every test of the module as one case:

* declaratively, at module level::

      pytestmark = pytest.mark.reliability_suite("hostile-input", "unauthenticated calls, ...")

* or through the ``record_suite`` fixture, inside a test or an autouse fixture::

      suite = record_suite("crashes", "SIGKILL of client, ingest, catalog, blobstore")

A test that checks many cases at once (50 kill points, 25 generated messages) says so with
``suite.add(cases, passed)`` (the ``reliability`` fixture returns the current test's suite);
the test then counts as ``cases`` cases, of which ``passed`` passed (all, if the test
passed and ``passed`` is not given; none if it failed and ``passed`` is not given).
``suite.note(text)`` adds a line to the suite's notes.

JSON written: {"suite", "injects", "cases", "passed", "notes"} plus "tests", "failed",
"skipped" and "seconds" for the report's detail.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

RESULTS = Path(__file__).parent / "results"
MARKER = "reliability_suite"


@dataclass
class Suite:
    name: str
    injects: str
    tests: int = 0
    cases: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    _sub: dict[str, tuple[int, int | None]] = field(default_factory=dict)

    def add(self, cases: int, passed: int | None = None) -> None:
        """The running test checks ``cases`` cases (``passed`` of them passed)."""
        nodeid = _current_nodeid()
        old_cases, old_passed = self._sub.get(nodeid, (0, None))
        total_passed = None if passed is None and old_passed is None else (old_passed or 0) + (passed or 0)
        self._sub[nodeid] = (old_cases + cases, total_passed)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def as_json(self) -> dict[str, object]:
        return {
            "suite": self.name,
            "injects": self.injects,
            "cases": self.cases,
            "passed": self.passed,
            "notes": "; ".join(self.notes),
            "tests": self.tests,
            "failed": self.failed,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 1),
        }


_SUITES: dict[str, Suite] = {}
_MODULES: dict[str, str] = {}  # test file (node id part) -> suite name (registered through the fixture)


def _current_nodeid() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]


def get_suite(name: str, injects: str) -> Suite:
    suite = _SUITES.get(name)
    if suite is None:
        suite = _SUITES[name] = Suite(name, injects)
    elif injects and not suite.injects:
        suite.injects = injects
    return suite


def _suite_of(item: pytest.Item) -> Suite | None:
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        name = marker.args[0] if marker.args else marker.kwargs["name"]
        injects = marker.args[1] if len(marker.args) > 1 else marker.kwargs.get("injects", "")
        return get_suite(name, injects)
    name = _MODULES.get(item.nodeid.split("::")[0])
    return _SUITES.get(name) if name else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(name, injects): count this test as a case of a reliability suite")


@pytest.fixture(scope="session")
def record_suite() -> Callable[[str, str], Suite]:
    """``record_suite(name, injects)``: join the running test's module to the suite (its tests
    count as cases from then on) and return the suite; usable from fixtures of any scope."""

    def join(name: str, injects: str) -> Suite:
        nodeid = _current_nodeid()
        if nodeid:
            _MODULES[nodeid.split("::")[0]] = name
        return get_suite(name, injects)

    return join


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Suite:
    """The running test's suite (from the marker or an earlier ``record_suite``)."""
    suite = _suite_of(request.node)
    if suite is None:
        raise RuntimeError(f"{request.node.nodeid} belongs to no reliability suite (mark it {MARKER})")
    return suite


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    suite = _suite_of(item)
    if suite is None:
        return
    suite.seconds += report.duration
    cases, passed = suite._sub.pop(item.nodeid, (0, None)) if report.when == "call" else (0, None)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            suite.skipped += 1
            return
        suite.tests += 1
        counted = cases or 1
        suite.cases += counted
        if report.passed:
            suite.passed += counted if passed is None else passed
        else:
            suite.failed += 1
            suite.passed += passed or 0
    elif report.when == "teardown" and report.failed:
        suite.failed += 1
        suite.note(f"teardown failed: {item.nodeid}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    ran = [suite for suite in _SUITES.values() if suite.tests or suite.skipped]
    if not ran:
        return
    RESULTS.mkdir(exist_ok=True)
    for suite in ran:
        data = suite.as_json()
        data["written"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        (RESULTS / f"{suite.name}.json").write_text(json.dumps(data, indent=2) + "\n")
