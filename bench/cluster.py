"""python -m bench.cluster: the benchmark against N Dockyard nodes behind nginx, as deployed to scale out.

Starts, on this machine: a private PostgreSQL cluster, Redis, moto's S3-compatible server (the same
services the scale-out tests use, tests/support/services.py), N `dockyard serve` nodes over them
and nginx balancing across the nodes; then runs `python -m bench` against nginx's address with the
arguments after `--`. Running it with --nodes 1 and --nodes 3 compares one node with three on the
same parts (database, object store, load balancer), so only the node count differs.

    python -m bench.cluster --nodes 3 --output /tmp/three.md -- --quick --duration 10 --connections 64

Needs Debian's postgresql, redis-server and nginx-light packages and moto[server] (pip)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import __main__ as bench_main
from bench.targets import (
    BENCH_IMAGES_PER_REPOSITORY,
    BENCH_REPOSITORIES_PER_ACCOUNT,
    HOST,
    _random_key,
    _wait_until_up,
    free_port,
)
from tests.support.services import PostgresCluster, RedisServer, S3Server

BUCKET = "dockyard-bench"
# Scenarios that need only the registry's address (no server process to measure memory of).
SCENARIOS = "blobs,concurrent,manifests"

NGINX_CONFIG = """\
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    upstream dockyard {{
        least_conn;
{servers}
        keepalive 128;
    }}
    server {{
        listen {host}:{port};
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_read_timeout 900s;
        location / {{
            proxy_pass http://dockyard;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, _, rest = _split(argv)
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="workers per node (default 1)")
    parser.add_argument("--output", type=Path, required=True, help="where the bench report goes")
    return parser.parse_args(own), rest


def _split(argv: list[str]) -> tuple[list[str], str, list[str]]:
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], "--", argv[at + 1 :]
    return argv, "", []


@contextlib.contextmanager
def _process(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    args, bench_args = parse_args(argv)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    work = Path(tempfile.mkdtemp(prefix="dockyard-cluster-bench-"))
    postgres, redis, s3 = PostgresCluster(), RedisServer(), S3Server()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        for service in (postgres, redis, s3):
            service.start()
            stack.callback(service.stop)
        s3.create_bucket(BUCKET)
        lb_port = free_port()
        key_id, secret = _random_key()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO_"))}
        env |= {"DOCKYARD_ROOT_ACCESS_KEY_ID": key_id, "DOCKYARD_ROOT_SECRET_ACCESS_KEY": secret, **s3.env()}
        ports = []
        for number in range(args.nodes):
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "bench.dockyard_serve",
                str(BENCH_IMAGES_PER_REPOSITORY),
                str(BENCH_REPOSITORIES_PER_ACCOUNT),
                *("--host", HOST, "--port", str(port), "--data-dir", str(work / f"node-{number}")),
                *("--workers", str(args.workers), "--log-level", "warning"),
                *("--database-url", postgres.url(), "--blob-store", f"s3://{BUCKET}/registry"),
                *("--s3-endpoint-url", s3.endpoint_url, "--s3-region", s3.region, "--redis-url", redis.url),
                *("--registry-host", f"{HOST}:{lb_port}"),
                # Nodes on one host cannot share the default metrics address; nothing here scrapes it.
                *("--metrics-address", "off"),
                # Offline: a fresh node would fetch osv.dev's vulnerability data at once.
                *("--vulndb-update-interval", "0"),
            ]
            log = work / f"node-{number}.log"
            process = stack.enter_context(_process(command, log, env))
            _wait_until_up(process, f"http://{HOST}:{port}/healthz", log)
            ports.append(port)
        root = work / "nginx"
        root.mkdir()
        servers = "\n".join(f"        server {HOST}:{port};" for port in ports)
        (root / "nginx.conf").write_text(NGINX_CONFIG.format(root=root, servers=servers, host=HOST, port=lb_port))
        command = [nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"]
        balancer = stack.enter_context(_process(command, root / "stdout.log"))
        url = f"http://{HOST}:{lb_port}"
        _wait_until_up(balancer, f"{url}/readyz", root / "error.log")
        status = bench_main.main(
            [
                *("--targets", "dockyard", "--dockyard-url", url, "--workers", str(args.workers)),
                *("--dockyard-access-key-id", key_id, "--dockyard-secret-access-key", secret),
                *("--scenarios", SCENARIOS, "--output", str(args.output), "--work-dir", str(work / "bench")),
                *bench_args,
            ]
        )
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
