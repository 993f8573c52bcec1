"""What every fuzz module shares: deterministic Hypothesis settings and a watch on the server that
notices 5xx answers, tracebacks in its log and restarted workers."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import psutil
from hypothesis import HealthCheck, Phase, settings

from tests.support.server import DockyardServer

# The server log's mark of an unhandled exception (the JSON log formatter keeps the text).
TRACEBACK = "Traceback (most recent call last)"
SENT_EXCERPT = 300
# The frames of a traceback that are Dockyard's own: where a failure's cause is.
OWN_FRAME = re.compile(r'File "[^"]*/dockyard/([^"]+)", line (\d+), in (\S+)')
MAX_REPORTED = 8


def fuzz_settings(max_examples: int) -> settings:
    """Reproducible in CI (derandomize), never failing on a slow machine (no deadline, no health
    checks), and no shrinking: every shrink step is a round trip to the server, and the failing
    example is reported as drawn."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        print_blob=False,
    )


def worker_pids(server: DockyardServer) -> set[int]:
    """The server's worker processes: its direct children (granian spawns one per worker)."""
    assert server.process is not None
    return {child.pid for child in psutil.Process(server.process.pid).children()}


def log_size(server: DockyardServer) -> int:
    return os.stat(server.stderr_path).st_size


def read_log(server: DockyardServer, offset: int) -> str:
    with server.stderr_path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def cause(log: str) -> str:
    """A traceback's cause in one line: its innermost Dockyard frame and the exception raised."""
    for line in log.splitlines():
        if TRACEBACK not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            text = line
        else:
            text = entry.get("exception") or entry.get("message") or line
        frames = OWN_FRAME.findall(text)
        where = "{}:{} in {}".format(*frames[-1]) if frames else "outside dockyard"
        return f"{where}: {text.strip().splitlines()[-1]}"
    return "no traceback logged"


@dataclass(frozen=True)
class Failure:
    status: int
    sent: str
    answer: bytes
    cause: str


@dataclass
class ServerWatch:
    """The server's state when fuzzing began, to compare against after every test, and the 5xx
    answers a test has seen (all of them, so one test reports every cause it hits)."""

    server: DockyardServer
    workers: set[int] = field(default_factory=set)
    log_offset: int = 0
    failures: list[Failure] = field(default_factory=list)

    @classmethod
    def start(cls, server: DockyardServer, workers: int) -> ServerWatch:
        pids = worker_pids(server)
        assert len(pids) == workers, f"expected {workers} workers, found {sorted(pids)}"
        return cls(server, pids, log_size(server))

    def mark(self) -> None:
        """Only what happens from now on counts against the next check."""
        self.log_offset = log_size(self.server)
        self.failures = []

    def before_request(self) -> int:
        return log_size(self.server)

    def answered(self, status: int, sent: str, answer: bytes, log_from: int) -> None:
        """Record a 5xx with what was sent and the cause the server logged."""
        if status >= 500:
            log = read_log(self.server, log_from)
            self.failures.append(Failure(status, sent[:SENT_EXCERPT], answer[:200], cause(log)))

    def dropped(self, sent: str, error: Exception, previous: str) -> None:
        """Record a connection closed without an answer: a crash, or a connection the server closed
        after an earlier answer that promised to keep it open."""
        reason = f"connection closed without an answer ({type(error).__name__}); previous request: {previous[:200]}"
        self.failures.append(Failure(0, sent[:SENT_EXCERPT], b"", reason))

    def assert_intact(self) -> None:
        """No 5xx since the mark, the server and the same workers running, no traceback logged."""
        problems: list[str] = []
        by_cause: dict[str, list[Failure]] = {}
        for failure in self.failures:
            by_cause.setdefault(failure.cause, []).append(failure)
        for reason, failures in list(by_cause.items())[:MAX_REPORTED]:
            first = failures[0]
            status = f"HTTP {first.status}" if first.status else "no answer"
            problems.append(
                f"{len(failures)} x {status}, cause {reason}\n  e.g. sent {first.sent}\n  answered {first.answer!r}"
            )
        if not self.server.running:
            problems.append(f"the server exited (code {self.server.returncode})")
        elif worker_pids(self.server) != self.workers:
            problems.append(
                f"workers restarted: {sorted(self.workers)} at start, {sorted(worker_pids(self.server))} now"
            )
        if not self.server.healthy():
            problems.append("the server no longer answers /healthz")
        log = read_log(self.server, self.log_offset)
        if TRACEBACK in log and not self.failures:
            problems.append(f"the server logged a traceback: {cause(log)}")
        assert not problems, "\n".join(problems)
