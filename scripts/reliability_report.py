#!/usr/bin/env python3
"""Render docs/reliability.md from the suites' JSON summaries (tests/reliability/results/*.json).

Each summary is {"suite", "injects", "cases", "passed", "notes"} (plus optional "tests",
"failed", "skipped", "seconds"), written by tests/reliability/conftest.py at the end of a run.
Usage: reliability_report.py [RESULTS_DIR] [OUTPUT]; `make reliability-report` runs the suites first.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tests" / "reliability" / "results"
OUTPUT = ROOT / "docs" / "reliability.md"
ORDER = [
    "crashes",
    "disk-full",
    "db-backups",
    "rebuild",
    "corruption",
    "concurrency",
    "hostile-input",
    "resource-limits",
    "endurance",
]

HEADER = """# Reliability

What the reliability suites (`tests/reliability/`, issue 8) do to Tardis, and how it held up.
They run as ordinary tests in the suite; `make reliability-report` runs them again and
regenerates this page from the summaries each suite writes
(`tests/reliability/results/<suite>.json`). Every case asserts the same things a user relies
on: each complete set restores exactly, the service answers a clear one-line error instead of
failing or crashing, and nothing outside the client's own data is touched.

The resource limits the resource-limits suite exercises are server settings (tardisd
`[Daemon]` keys and flags; `tardis-ingest` and `tardis-blobstore` flags). Beyond each the
server answers RESOURCE_EXHAUSTED and the tool prints one line naming the setting:

| setting | bounds | default |
|---|---|---|
| `ClientQuota` (`TARDIS_CLIENT_QUOTA`, `--client-quota`) | bytes of objects one client may store | 0 (none) |
| `MaxSessionsPerClient` (`--max-sessions-per-client`) | calls one client may have in progress at once | 8 |
| `MaxMessageBytes` (`--max-message-bytes`) | one gRPC message, refused unread beyond it | 32 MiB |
| `MaxEntriesPerBatch` (`--max-entries-per-batch`) | entries per SubmitEntries/CheckContent, files per upload | 10,000 |
"""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def load(results: Path) -> list[dict[str, object]]:
    found = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results.glob("*.json"))]
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda s: (rank.get(str(s["suite"]), len(ORDER)), str(s["suite"])))


def render(suites: list[dict[str, object]]) -> str:
    lines = [HEADER]
    if not suites:
        lines.append("No suite has written a summary yet: run `make reliability-report`.\n")
        return "\n".join(lines)
    total = sum(int(s["cases"]) for s in suites)  # type: ignore[call-overload]
    passed = sum(int(s["passed"]) for s in suites)  # type: ignore[call-overload]
    lines.append(f"Generated {time.strftime('%Y-%m-%d')}: {passed} of {total} cases passed.\n")
    lines.append("| suite | what it injects | cases | passed | result |")
    lines.append("|---|---|---:|---:|---|")
    for s in suites:
        cases, ok = int(s["cases"]), int(s["passed"])  # type: ignore[call-overload]
        result = "all passed" if cases == ok and not s.get("failed") else f"**{cases - ok} failed**"
        if s.get("skipped"):
            result += f", {s['skipped']} skipped"
        lines.append(f"| {_cell(s['suite'])} | {_cell(s['injects'])} | {cases} | {ok} | {result} |")
    lines.append("")
    for s in suites:
        lines.append(f"## {s['suite']}\n")
        lines.append("| | |\n|---|---|")
        lines.append(f"| injects | {_cell(s['injects'])} |")
        lines.append(f"| cases (tests) | {s['cases']} ({s.get('tests', '?')}) |")
        lines.append(f"| passed | {s['passed']} |")
        if s.get("failed"):
            lines.append(f"| failed tests | {s['failed']} |")
        if s.get("seconds") is not None:
            lines.append(f"| time | {s['seconds']} s |")
        if s.get("notes"):
            lines.append(f"| notes | {_cell(s['notes'])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    results = Path(argv[1]) if len(argv) > 1 else RESULTS
    output = Path(argv[2]) if len(argv) > 2 else OUTPUT
    output.write_text(render(load(results)), encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
