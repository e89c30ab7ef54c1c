"""Prometheus metrics of ``watch`` (SPEC section 11), served over HTTP for scraping.

The only user of prometheus_client. Each ``Metrics`` owns a private ``CollectorRegistry``, so
two watchers (or two tests) in one process never mix their numbers, and nothing lands in the
library's global registry. The freshness signal is ``reconcile_last_success_timestamp_seconds``:
a watcher that keeps failing keeps serving the last verdicts, and that timestamp ages.

The server binds loopback unless told otherwise: metrics name forms, tags and accounts, which
are nobody else's business. This module must never expose a URL, a secret or a token as a
label: labels are account names, statuses, HTTP codes and operation names only.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from reconciler.errors import ConfigError
from reconciler.hosts import is_loopback_host as is_loopback

if TYPE_CHECKING:
    from reconciler.drift_report import DriftReport

__all__ = ["CYCLE_BUCKETS", "WEBHOOK_STATUSES", "Metrics", "MetricsServer", "is_loopback"]

WEBHOOK_STATUSES: tuple[str, ...] = ("in_sync", "drifted", "missing", "unmanaged", "heal_suspended")
CYCLE_BUCKETS: tuple[float, ...] = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
"""A cycle refreshes every form in scope at 2 requests/s: from a second to many minutes."""


class _WebhookGauge(Collector):
    """``reconcile_webhooks{account,status}`` from the last report, swapped in whole.

    A plain labelled Gauge would need clearing and re-setting (a scrape in between would see
    accounts vanish) and would keep accounts that left the manifests; one snapshot replaced
    atomically has neither problem.
    """

    def __init__(self) -> None:
        self._snapshot: dict[str, dict[str, int]] = {}

    def update(self, totals: dict[str, dict[str, int]]) -> None:
        self._snapshot = {account: dict(counts) for account, counts in totals.items()}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "reconcile_webhooks",
            "Webhooks per account and drift status in the last report.",
            labels=["account", "status"],
        )
        for account, counts in sorted(self._snapshot.items()):
            for status in WEBHOOK_STATUSES:
                family.add_metric([account, status], counts.get(status, 0))
        yield family


class Metrics:
    """The watch loop's numbers, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._webhooks = _WebhookGauge()
        self.registry.register(self._webhooks)
        self._cycle_duration = Histogram(
            "reconcile_cycle_duration_seconds",
            "Wall time of one watch cycle (refresh, compare, heal), failed ones included.",
            buckets=CYCLE_BUCKETS,
            registry=self.registry,
        )
        self._requests = Counter(
            "reconcile_api_requests_total",
            "Requests sent to the Typeform API, by account and HTTP status ('error': no answer).",
            ["account", "code"],
            registry=self.registry,
        )
        self._throttled = Counter(
            "reconcile_throttled_total",
            "429 answers from the Typeform API, by account.",
            ["account"],
            registry=self.registry,
        )
        self._heals = Counter(
            "reconcile_heal_operations_total",
            "Writes made by watch --heal, by operation and result.",
            ["operation", "result"],
            registry=self.registry,
        )
        self._last_success = Gauge(
            "reconcile_last_success_timestamp_seconds",
            "Unix time of the end of the last successful cycle; alert when it grows old.",
            registry=self.registry,
        )

    def observe_report(self, report: DriftReport) -> None:
        """Publish a report's counts per account (accounts no longer reported disappear)."""
        self._webhooks.update(report.account_totals())

    def observe_cycle(self, duration_s: float, *, success: bool, now: float) -> None:
        """Record one cycle; ``now`` (Unix seconds) becomes the last success when it succeeded."""
        self._cycle_duration.observe(max(0.0, duration_s))
        if success:
            self._last_success.set(now)

    def count_request(self, account: str, code: int | str) -> None:
        """One API request and its HTTP status (or ``"error"`` when none came back)."""
        self._requests.labels(account=account, code=str(code)).inc()

    def count_throttled(self, account: str) -> None:
        self._throttled.labels(account=account).inc()

    def count_heal(self, operation: str, result: str) -> None:
        """One heal write: ``operation`` create/update/delete, ``result`` success/failure."""
        self._heals.labels(operation=operation, result=result).inc()

    def serve(
        self, *, host: str = "127.0.0.1", port: int, allow_remote: bool = False
    ) -> MetricsServer:
        """Serve ``/metrics`` from a daemon thread; ``port=0`` picks a free port.

        A host that is not a loopback address is refused unless ``allow_remote`` (the CLI's
        ``--metrics-host``): exposing the metrics must be a decision, not a default.
        """
        if not 0 <= port <= 65535:
            raise ConfigError(f"metrics port {port} is out of range: use 0 to 65535")
        if not allow_remote and not is_loopback(host):
            raise ConfigError(
                f"refusing to serve metrics on {host}: not a loopback address "
                "(name it with --metrics-host to expose the metrics deliberately)"
            )
        server_class = _IPv6Server if ":" in host else ThreadingWSGIServer
        try:
            server = make_server(
                host.strip("[]"),
                port,
                make_wsgi_app(self.registry),
                server_class,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {reason}") from exc
        # A short poll makes close() (and so a SIGTERM'd watch) return in milliseconds.
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="reconcile-metrics",
            daemon=True,
        )
        thread.start()
        return MetricsServer(
            host=host, port=int(server.server_port), _server=server, _thread=thread
        )


class _IPv6Server(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: scrapes every few seconds would drown the watch log."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class MetricsServer:
    """A running metrics endpoint: ``port`` is the bound one (useful with port 0)."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
