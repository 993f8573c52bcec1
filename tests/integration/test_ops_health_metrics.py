"""/healthz, /readyz, Prometheus /metrics, and request IDs that tie a response to its log line and
its audit event."""

from __future__ import annotations

import json
import os
import time

import requests

from tests.integration.ops_support import Pusher, metric, metrics
from tests.support.clients import Boto3Clients
from tests.support.server import ServerFactory


def test_health_and_readiness(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory()
    alive = requests.get(f"{server.url}/healthz", timeout=10)
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    ready = requests.get(f"{server.url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok", "audit": "ok"}}

    storage = server.data_dir / "storage"
    moved = server.data_dir / "storage-away"
    storage.rename(moved)
    try:
        unready = requests.get(f"{server.url}/readyz", timeout=10)
        assert unready.status_code == 503
        body = unready.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok" and body["checks"]["storage"] != "ok"
        assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200, "alive all the same"
    finally:
        moved.rename(storage)
    assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200


def test_metrics_count_requests_latency_bytes_and_storage(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory()
    Boto3Clients(server)("ecr").create_repository(repositoryName="measured")
    pusher = Pusher.for_server(server)
    layer = os.urandom(50_000)
    image = pusher.push_unique("measured", "v1", [layer])
    for _ in range(3):
        assert pusher.request("GET", "/v2/measured/manifests/v1").status_code == 200
    assert pusher.request("GET", "/v2/measured/manifests/nope").status_code == 404

    samples = metrics(server)
    assert metric(samples, "dockyard_requests_total", door="registry", operation="BatchGetImage", status="200") == 3
    assert metric(samples, "dockyard_requests_total", door="registry", operation="BatchGetImage", status="404") == 1
    assert metric(samples, "dockyard_requests_total", door="registry", operation="PutImage", status="201") == 1
    assert metric(samples, "dockyard_requests_total", door="ecr", operation="CreateRepository", status="200") == 1
    assert metric(samples, "dockyard_request_duration_seconds_count", door="registry", operation="BatchGetImage") == 4
    assert metric(samples, "dockyard_request_duration_seconds_bucket", operation="BatchGetImage", le="+Inf") == 4
    assert metric(samples, "dockyard_received_bytes_total", door="registry") >= len(layer)
    assert metric(samples, "dockyard_sent_bytes_total", door="registry") >= 3 * len(image.manifest)
    assert ("dockyard_uploads_in_progress", frozenset()) in samples
    assert metric(samples, "dockyard_storage_bytes") >= len(layer)
    assert metric(samples, "dockyard_repository_storage_bytes", repository="measured") == sum(map(len, image.layers))
    assert metric(samples, "dockyard_upload_sessions") == 0
    assert ("dockyard_queue_depth", frozenset({("queue", "scan")})) in samples
    assert metric(samples, "dockyard_audit_events_total", durable="true") >= 1


def test_request_ids_tie_responses_logs_and_events(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=["--log-level", "debug"])
    ecr = Boto3Clients(server)("ecr")
    created = ecr.create_repository(repositoryName="traced-ids")
    request_id = created["ResponseMetadata"]["RequestId"]
    assert created["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == request_id
    pusher = Pusher.for_server(server)
    pusher.push_unique("traced-ids", "v1", [os.urandom(100)])
    pulled = pusher.request("GET", "/v2/traced-ids/manifests/v1")
    registry_id = pulled.headers["X-Request-Id"]
    assert registry_id and registry_id != request_id

    events = Boto3Clients(server)("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateRepository"}]
    )["Events"]
    assert json.loads(events[0]["CloudTrailEvent"])["requestID"] == request_id

    deadline = time.monotonic() + 10
    lines: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
        if any(line.get("request_id") == registry_id for line in lines):
            break
        time.sleep(0.2)
    created_line = next(line for line in lines if line.get("request_id") == request_id)
    assert created_line["operation"] == "CreateRepository" and created_line["status"] == 200
    assert created_line["level"] == "info" and created_line["door"] == "ecr"
    pull_line = next(line for line in lines if line.get("request_id") == registry_id)
    assert pull_line["operation"] == "BatchGetImage" and pull_line["level"] == "debug"
    assert isinstance(pull_line["duration_ms"], float)


def test_successful_reads_stay_out_of_an_info_log(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory()
    Boto3Clients(server)("ecr").create_repository(repositoryName="quiet")
    pusher = Pusher.for_server(server)
    pusher.push_unique("quiet", "v1", [os.urandom(100)])
    pulled = pusher.request("GET", "/v2/quiet/manifests/v1")
    time.sleep(0.5)
    assert pulled.headers["X-Request-Id"] not in server.stderr()
