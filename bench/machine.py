"""What this machine allows, whatever the registry: hashing, disk and loopback throughput."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import threading
import time
from pathlib import Path

import psutil

MIB = 1024 * 1024
BLOCK = MIB


def describe() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "Memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "Kernel": platform.release(),
        "Python": platform.python_version(),
    }


def sha256_throughput(size: int) -> float:
    """MiB/s of hashlib.sha256 on one core, in 1 MiB updates."""
    block = os.urandom(BLOCK)
    hasher = hashlib.sha256()
    start = time.perf_counter()
    for _ in range(max(1, size // BLOCK)):
        hasher.update(block)
    return max(1, size // BLOCK) / (time.perf_counter() - start)


def disk_write_throughput(directory: Path, size: int) -> float:
    """MiB/s of writing a new file and fsyncing it, the least a durable push has to do."""
    block = os.urandom(BLOCK)
    path = directory / "bench-write"
    start = time.perf_counter()
    with open(path, "wb") as handle:
        for _ in range(max(1, size // BLOCK)):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return max(1, size // BLOCK) / elapsed


def file_copy_throughput(directory: Path, size: int) -> float:
    """MiB/s of a plain file copy on the same disk (copy_file_range/sendfile), fsynced."""
    source, copy = directory / "bench-copy-source", directory / "bench-copy-target"
    block = os.urandom(BLOCK)
    with open(source, "wb") as handle:
        for _ in range(max(1, size // BLOCK)):
            handle.write(block)
    start = time.perf_counter()
    shutil.copyfile(source, copy)
    with open(copy, "rb") as handle:
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - start
    source.unlink()
    copy.unlink()
    return max(1, size // BLOCK) / elapsed


def loopback_throughput(size: int) -> float:
    """MiB/s through one loopback TCP connection, sendall against recv_into: the wire a pull uses."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    block = os.urandom(BLOCK)
    blocks = max(1, size // BLOCK)

    def send() -> None:
        conn, _ = server.accept()
        with conn:
            for _ in range(blocks):
                conn.sendall(block)

    sender = threading.Thread(target=send)
    sender.start()
    buffer = memoryview(bytearray(BLOCK))
    received = 0
    with socket.create_connection(("127.0.0.1", port)) as client:
        start = time.perf_counter()
        while received < blocks * BLOCK:
            count = client.recv_into(buffer)
            if not count:
                break
            received += count
        elapsed = time.perf_counter() - start
    sender.join()
    server.close()
    return received / MIB / elapsed


def limits(directory: Path, size: int) -> dict[str, float]:
    """Each limit measured three times; the best run is what the machine allows."""
    directory.mkdir(parents=True, exist_ok=True)
    measures = {
        "sha256, one core": lambda: sha256_throughput(size),
        "disk write + fsync": lambda: disk_write_throughput(directory, size),
        "file copy, same disk": lambda: file_copy_throughput(directory, size),
        "loopback TCP, one connection": lambda: loopback_throughput(size),
    }
    return {name: max(measure() for _ in range(3)) for name, measure in measures.items()}
