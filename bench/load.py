"""Requests-per-second load on one URL from a separate process: wrk for GET (the cheapest client),
hey for HEAD (wrk 4.1 waits for a body after HEAD and stalls), bench.loadgen when neither exists.

The generator shares the machine's cores with the server, so its own CPU time is measured too:
`ceiling` is the requests it could send per second with one core to itself."""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass
class LoadResult:
    generator: str
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # the generator's own CPU time
    seconds: float

    @property
    def ceiling(self) -> float:
        return self.requests / self.cpu_seconds if self.cpu_seconds else float("inf")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(command: list[str], timeout: float) -> tuple[str, float, float]:
    cpu, start = _children_cpu(), time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout, cpu, seconds


def _wrk(url: str, headers: dict[str, str], connections: int, duration: float, threads: int) -> LoadResult:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out, cpu, seconds = _run([*command, url], duration + 30)

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            raise RuntimeError(f"no {percent}% latency in wrk output:\n{out}")
        return float(match[1]) * _UNITS[match[2]] * 1000

    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = int(errors[1]) if errors else 0
    if socket_errors:
        failed += sum(int(n) for n in socket_errors.groups())
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    return LoadResult("wrk", requests, failed, rps, latency("50"), latency("99"), cpu, seconds)


def _hey(url: str, method: str, headers: dict[str, str], connections: int, duration: float, threads: int) -> LoadResult:
    command = ["hey", "-z", f"{duration}s", "-c", str(connections), "-m", method, "-cpus", str(threads)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out, cpu, seconds = _run([*command, url], duration + 60)

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}% in ([\d.]+) secs", out, re.M)
        if not match:
            raise RuntimeError(f"no {percent}% latency in hey output:\n{out}")
        return float(match[1]) * 1000

    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    requests = sum(codes.values())
    failed = sum(n for c, n in codes.items() if c >= 400)
    error_lines = re.search(r"Error distribution:\n((?:\s+\[\d+\].*\n?)+)", out)
    if error_lines:
        failed += sum(int(n) for n in re.findall(r"\[(\d+)\]", error_lines[1]))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    return LoadResult("hey", requests, failed, rps, latency("50"), latency("99"), cpu, seconds)


def _python(url: str, method: str, headers: dict[str, str], connections: int, duration: float) -> LoadResult:
    spec = {"url": url, "method": method, "headers": headers, "connections": connections, "duration": duration}
    out, cpu, seconds = _run([sys.executable, "-m", "bench.loadgen", json.dumps(spec)], duration + 60)
    data = json.loads(out)
    latencies = sorted(data["latencies"]) or [0.0]

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    rps = data["requests"] / data["seconds"]
    return LoadResult("python", data["requests"], data["errors"], rps, percentile(0.5), percentile(0.99), cpu, seconds)


def generator_for(method: str) -> str:
    if method == "GET" and shutil.which("wrk"):
        return "wrk"
    if shutil.which("hey"):
        return "hey"
    return "python"


def load(url: str, method: str, headers: dict[str, str], connections: int, duration: float, threads: int) -> LoadResult:
    generator = generator_for(method)
    if generator == "wrk":
        return _wrk(url, headers, connections, duration, threads)
    if generator == "hey":
        return _hey(url, method, headers, connections, duration, threads)
    return _python(url, method, headers, connections, duration)
