"""Benchmark: does the paced client run *at* the rate limit, never above it?

Starts a local HTTP server on 127.0.0.1 (in its own process) that behaves like Typeform's
limiter at 20 requests/s (a token bucket with burst 1, answering 429 with ``Retry-After`` when
exceeded) and answers every request after 150 ms, then sends 40 requests
through ``TypeformClient(rate=20)`` from 40 concurrent tasks and prints a table.

    pacing efficiency = ideal time / actual time,  ideal = (n - 1) / rate + latency

i.e. the time it takes when request starts are exactly 1/rate apart and latency overlaps the
pacing. Target (issue #3): efficiency >= 0.95 with 0 requests throttled (429) by the server.
The run is repeated a few times and judged on the median efficiency; any 429 in any run fails.
Exit code 1 when the target is missed.

Run: ``python tests/benchmarks/bench_client.py`` (``make bench`` runs every bench_*.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import multiprocessing
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection

import anyio
import httpx

from reconciler.client import TypeformClient

N_REQUESTS = 40
RATE = 20.0
LATENCY = 0.150
ROUNDS = 3
TARGET_EFFICIENCY = 0.95
# The server forgives an arrival up to 10 ms ahead of its theoretical time (GCRA tolerance). The
# trip from the client's start to the server's handler varies on loopback: about 2 ms on a
# kept-alive connection, up to ~9 ms measured when the request has to open a new connection
# first; the benchmark measures the client's pacing, not that trip. It is not a burst: an early
# arrival is paid back by the next ones, so a client that really sends faster than RATE is
# throttled within a few requests, which the control round checks every run.
JITTER_TOLERANCE = 0.010
CONTROL_RATE = RATE * 1.1
CONTROL_REQUESTS = 10
STATS_PATH = "/_stats"


class TokenBucket:
    """Typeform-like limiter: ``rate`` tokens/s, burst 1, a request costs one token."""

    def __init__(self, rate: float, tolerance: float) -> None:
        self.rate = rate
        self.epsilon = tolerance * rate  # the tolerance, in tokens
        self.tokens = 1.0
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float | None:
        """Take a token (None) or say how many seconds until one is available."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(1.0, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0 - self.epsilon:
                self.tokens -= 1.0
                return None
            return (1.0 - self.tokens) / self.rate


def make_handler(bucket: TokenBucket) -> type[BaseHTTPRequestHandler]:
    arrivals: list[float] = []
    throttled = 0

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Typeform's API

        def do_GET(self) -> None:
            nonlocal throttled
            arrived = time.monotonic()
            if self.path == STATS_PATH:  # not an API request: neither limited nor counted
                self._send(200, {"arrivals": sorted(arrivals), "throttled": throttled})
                return
            wait = bucket.take()
            with bucket.lock:
                arrivals.append(arrived)
                throttled += wait is not None
            time.sleep(LATENCY)
            if wait is None:
                self._send(200, {"items": []})
            else:
                body = {"code": "RATE_LIMITED", "description": "too many requests"}
                self._send(429, body, {"Retry-After": f"{max(1, math.ceil(wait))}"})

        def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the table is the output

    return Handler


def serve(port_out: Connection) -> None:
    """The server process: its own interpreter, so its threads never wait for the client's GIL."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), make_handler(TokenBucket(RATE, JITTER_TOLERANCE))
    )
    server.daemon_threads = True
    port_out.send(server.server_address[1])
    server.serve_forever()


@contextmanager
def rate_limited_server() -> Iterator[str]:
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=serve, args=(send,), daemon=True)
    process.start()
    try:
        if not receive.poll(30):
            raise RuntimeError("the benchmark server did not start")
        yield f"http://127.0.0.1:{receive.recv()}"
    finally:
        process.terminate()
        process.join()


@dataclass
class Round:
    actual: float
    throttled_server: int
    throttled_client: int
    retries: int
    achieved_rate: float
    min_gap_ms: float

    requests: int = N_REQUESTS
    rate: float = RATE

    @property
    def ideal(self) -> float:
        return (self.requests - 1) / self.rate + LATENCY

    @property
    def efficiency(self) -> float:
        return self.ideal / self.actual


async def one_round(*, rate: float = RATE, requests: int = N_REQUESTS) -> Round:
    with rate_limited_server() as url:
        async with TypeformClient(base_url=url, token="bench-token", rate=rate) as client:
            began = time.monotonic()
            async with anyio.create_task_group() as tg:
                for i in range(requests):
                    tg.start_soon(client.list_webhooks, f"form{i}")
            actual = time.monotonic() - began
            metrics = client.metrics
        async with httpx.AsyncClient(base_url=url) as plain:
            stats = (await plain.get(STATS_PATH)).json()
    arrivals = stats["arrivals"]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return Round(
        actual=actual,
        throttled_server=stats["throttled"],
        throttled_client=metrics.throttled,
        retries=metrics.retries,
        achieved_rate=metrics.achieved_rate,
        min_gap_ms=min(gaps) * 1000 if gaps else 0.0,
        requests=requests,
        rate=rate,
    )


def main() -> int:
    # The benchmark deliberately runs above Typeform's documented 2/s, against its own server.
    logging.getLogger("reconciler.client").setLevel(logging.ERROR)
    rounds = [anyio.run(one_round) for _ in range(ROUNDS)]
    # Control: the same server must throttle a client that is 10% too fast, or it proves nothing.
    control = anyio.run(partial(one_round, rate=CONTROL_RATE, requests=CONTROL_REQUESTS))

    print(
        f"paced client: {N_REQUESTS} requests, server limit {RATE:g}/s (burst 1, "
        f"{JITTER_TOLERANCE * 1000:g} ms jitter tolerance), latency {LATENCY * 1000:.0f} ms, "
        "default concurrency (4)"
    )
    header = (
        f"{'round':>7} {'ideal s':>8} {'actual s':>9} {'efficiency':>10} {'429s':>5} "
        f"{'retries':>7} {'start rate/s':>12} {'min gap ms':>10}"
    )
    print(header)
    print("-" * len(header))
    for i, r in enumerate(rounds, 1):
        print(
            f"{i:>7} {r.ideal:>8.3f} {r.actual:>9.3f} {r.efficiency:>10.3f} "
            f"{r.throttled_server:>5} {r.retries:>7} {r.achieved_rate:>12.2f} "
            f"{r.min_gap_ms:>10.1f}"
        )
    print(
        f"{'control':>7} {'':>8} {control.actual:>9.3f} {'':>10} {control.throttled_server:>5} "
        f"{control.retries:>7} {control.achieved_rate:>12.2f} {control.min_gap_ms:>10.1f}"
        f"   <- {CONTROL_REQUESTS} requests at {CONTROL_RATE:g}/s must be throttled"
    )
    efficiency = statistics.median(r.efficiency for r in rounds)
    throttled = sum(r.throttled_server for r in rounds)
    server_bites = control.throttled_server > 0
    ok = efficiency >= TARGET_EFFICIENCY and throttled == 0 and server_bites
    print("-" * len(header))
    print(
        f"median efficiency {efficiency:.3f} (target >= {TARGET_EFFICIENCY}), "
        f"429s received {throttled} (target 0), control throttled: "
        f"{'yes' if server_bites else 'NO'}: {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
