"""Server counters and histograms, rendered in the Prometheus text exposition format."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
ARRIVED = "moonlet.arrived"  # scope key: perf_counter time the request arrived


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(str(value))}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Histogram:
    """Cumulative buckets, sum and count for one label set."""

    def __init__(self, buckets: tuple[float, ...]):
        self.bounds = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: tuple[tuple[str, str], ...]) -> list[str]:
        out = [
            f"{name}_bucket{_labels(labels + (('le', _number(float(bound))),))} {count}"
            for bound, count in zip(self.bounds, self.counts)
        ]
        out.append(f"{name}_bucket{_labels(labels + (('le', '+Inf'),))} {self.count}")
        out.append(f"{name}_sum{_labels(labels)} {_number(self.total)}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


class Metrics:
    """Everything ``/metrics`` reports; safe to update from the worker and the event loop."""

    def __init__(self, model_name: str = "", queue_depth: Callable[[], int] | None = None):
        self._lock = threading.Lock()
        self.model_name = model_name
        self.queue_depth = queue_depth or (lambda: 0)
        self.started = time.time()
        self.requests: dict[tuple[str, str], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.in_flight = 0
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.ttft = Histogram(LATENCY_BUCKETS)
        self.batch_sizes = Histogram(BATCH_BUCKETS)

    # --- updates ------------------------------------------------------------------------

    def request_started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def request_finished(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.in_flight -= 1
            key = (route, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def text_finished(self, prompt_tokens: int, generated_tokens: int, ttft_s: float | None) -> None:
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.generated_tokens += generated_tokens
            if ttft_s is not None:
                self.ttft.observe(ttft_s)

    def batch_run(self, size: int) -> None:
        with self._lock:
            self.batch_sizes.observe(size)

    # --- exposition ---------------------------------------------------------------------

    def render(self) -> str:
        depth = self.queue_depth()
        with self._lock:
            lines = [
                "# HELP moonlet_info The served model.",
                "# TYPE moonlet_info gauge",
                f"moonlet_info{_labels((('model', self.model_name),))} 1",
                "# HELP moonlet_start_time_seconds Unix time the server started.",
                "# TYPE moonlet_start_time_seconds gauge",
                f"moonlet_start_time_seconds {_number(self.started)}",
                "# HELP moonlet_requests_total HTTP requests by route and status.",
                "# TYPE moonlet_requests_total counter",
            ]
            for (route, status), count in sorted(self.requests.items()):
                lines.append(f"moonlet_requests_total{_labels((('route', route), ('status', status)))} {count}")
            lines += [
                "# HELP moonlet_request_duration_seconds Time from request to last response byte.",
                "# TYPE moonlet_request_duration_seconds histogram",
            ]
            for route, histogram in sorted(self.latency.items()):
                lines += histogram.lines("moonlet_request_duration_seconds", (("route", route),))
            lines += [
                "# HELP moonlet_requests_in_flight Requests being handled now.",
                "# TYPE moonlet_requests_in_flight gauge",
                f"moonlet_requests_in_flight {self.in_flight}",
                "# HELP moonlet_queue_depth Jobs waiting for the model worker.",
                "# TYPE moonlet_queue_depth gauge",
                f"moonlet_queue_depth {depth}",
                "# HELP moonlet_prompt_tokens_total Prompt tokens prefilled (image prefix included).",
                "# TYPE moonlet_prompt_tokens_total counter",
                f"moonlet_prompt_tokens_total {self.prompt_tokens}",
                "# HELP moonlet_generated_tokens_total Tokens generated.",
                "# TYPE moonlet_generated_tokens_total counter",
                f"moonlet_generated_tokens_total {self.generated_tokens}",
                "# HELP moonlet_time_to_first_token_seconds From request arrival to its first token.",
                "# TYPE moonlet_time_to_first_token_seconds histogram",
                *self.ttft.lines("moonlet_time_to_first_token_seconds", ()),
                "# HELP moonlet_batch_size Rows decoded together per engine run.",
                "# TYPE moonlet_batch_size histogram",
                *self.batch_sizes.lines("moonlet_batch_size", ()),
            ]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """ASGI middleware timing each HTTP request until its last body byte (streams included)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope[ARRIVED] = start  # routes read it so that figures count from arrival
        status = {"code": 500, "done": False}
        self.metrics.request_started()

        def finish() -> None:
            if not status["done"]:
                status["done"] = True
                route = getattr(scope.get("route"), "path", None) or "other"
                self.metrics.request_finished(route, status["code"], time.perf_counter() - start)

        async def timed_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()

        try:
            await self.app(scope, receive, timed_send)
        finally:
            finish()
