"""Metrics, scraped over real HTTP on 127.0.0.1 as Prometheus would."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.drift_report import DriftCause, DriftReport, DriftStatus, WebhookDrift
from reconciler.errors import ConfigError
from reconciler.metrics import Metrics, MetricsServer, is_loopback
from reconciler.models import WebhookKey

NOW = "2026-03-01T12:00:00Z"


def verdict(
    account: str, tag: str, status: DriftStatus, *, suspended: bool = False
) -> WebhookDrift:
    cause = DriftCause.UNKNOWN if status in (DriftStatus.DRIFTED, DriftStatus.MISSING) else None
    return WebhookDrift(
        WebhookKey(account, "F1", tag), status, cause, (), (), None, NOW, heal_suspended=suspended
    )


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def served(metrics: Metrics) -> Iterator[MetricsServer]:
    with metrics.serve(port=0) as server:
        yield server


def scrape(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by (name, sorted labels)."""
    response = httpx.get(server.url, timeout=5)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_webhook_counts_per_account_and_status_follow_the_last_report(
    metrics: Metrics, served: MetricsServer
) -> None:
    metrics.observe_report(
        DriftReport(
            NOW,
            (
                verdict("default", "a", DriftStatus.IN_SYNC),
                verdict("default", "b", DriftStatus.DRIFTED, suspended=True),
                verdict("default", "c", DriftStatus.DRIFTED),
                verdict("eu", "d", DriftStatus.MISSING),
                verdict("eu", "e", DriftStatus.UNMANAGED),
            ),
        )
    )
    got = scrape(served)

    def webhooks(account: str, status: str) -> float:
        return got[("reconcile_webhooks", (("account", account), ("status", status)))]

    assert webhooks("default", "in_sync") == 1
    assert webhooks("default", "drifted") == 2
    assert webhooks("default", "heal_suspended") == 1
    assert webhooks("default", "missing") == 0
    assert webhooks("eu", "missing") == 1
    assert webhooks("eu", "unmanaged") == 1

    metrics.observe_report(DriftReport(NOW, (verdict("default", "a", DriftStatus.IN_SYNC),)))
    got = scrape(served)
    assert webhooks("default", "drifted") == 0
    assert not any(labels and ("account", "eu") in labels for _, labels in got)


def test_requests_throttles_heals_cycles_and_last_success_are_exported(
    metrics: Metrics, served: MetricsServer
) -> None:
    for code in (200, 200, 429, "error"):
        metrics.count_request("eu", code)
    metrics.count_throttled("eu")
    metrics.count_heal("update", "success")
    metrics.count_heal("update", "success")
    metrics.count_heal("create", "failure")
    metrics.observe_cycle(3.0, success=True, now=1_772_366_400.0)
    metrics.observe_cycle(45.0, success=False, now=1_772_366_999.0)
    got = scrape(served)

    assert got[("reconcile_api_requests_total", (("account", "eu"), ("code", "200")))] == 2
    assert got[("reconcile_api_requests_total", (("account", "eu"), ("code", "429")))] == 1
    assert got[("reconcile_api_requests_total", (("account", "eu"), ("code", "error")))] == 1
    assert got[("reconcile_throttled_total", (("account", "eu"),))] == 1
    heals = "reconcile_heal_operations_total"
    assert got[(heals, (("operation", "update"), ("result", "success")))] == 2
    assert got[(heals, (("operation", "create"), ("result", "failure")))] == 1
    assert got[("reconcile_cycle_duration_seconds_count", ())] == 2
    assert got[("reconcile_cycle_duration_seconds_sum", ())] == 48.0
    assert got[("reconcile_cycle_duration_seconds_bucket", (("le", "5.0"),))] == 1
    # The failed cycle must not refresh the freshness signal.
    assert got[("reconcile_last_success_timestamp_seconds", ())] == 1_772_366_400.0


def test_two_metrics_objects_never_share_numbers() -> None:
    first, second = Metrics(), Metrics()
    first.count_throttled("default")
    with first.serve(port=0) as one, second.serve(port=0) as two:
        assert one.port != two.port
        assert scrape(one)[("reconcile_throttled_total", (("account", "default"),))] == 1
        assert ("reconcile_throttled_total", (("account", "default"),)) not in scrape(two)


def test_a_closed_server_releases_its_port(metrics: Metrics) -> None:
    server = metrics.serve(port=0)
    port = server.port
    server.close()
    server.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "metrics.example.com", ""])
def test_a_non_loopback_host_is_refused_without_allow_remote(metrics: Metrics, host: str) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        metrics.serve(host=host, port=0)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True),
     ("LOCALHOST", True), ("0.0.0.0", False), ("localhost.evil.example", False)],
)  # fmt: skip
def test_loopback_means_a_loopback_literal_or_localhost(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_port_in_use_is_a_one_line_config_error(metrics: Metrics, served: MetricsServer) -> None:
    with pytest.raises(ConfigError, match=rf"cannot serve metrics on 127\.0\.0\.1:{served.port}"):
        Metrics().serve(port=served.port)


def test_a_port_out_of_range_is_a_config_error(metrics: Metrics) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        metrics.serve(port=70000)


def test_scrapes_leave_no_access_log_on_stderr(
    served: MetricsServer, capfd: pytest.CaptureFixture[str]
) -> None:
    scrape(served)
    assert capfd.readouterr().err == ""


def test_the_ipv6_loopback_can_serve_metrics(metrics: Metrics) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this environment")
    try:
        server = metrics.serve(host="::1", port=0)
    except ConfigError as exc:
        pytest.skip(f"::1 not bindable here: {exc}")
    with server:
        assert server.url == f"http://[::1]:{server.port}/metrics"
        assert ("reconcile_last_success_timestamp_seconds", ()) in scrape(server)
