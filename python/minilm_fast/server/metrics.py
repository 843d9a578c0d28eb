"""The server's metrics in Prometheus' text exposition format (version 0.0.4), written by hand.

A few counters, gauges and histograms with fixed buckets, each behind its own lock: the engine's
threads report batches (``Encoder.on_batch``) while the event loop counts requests. Writing the
format ourselves keeps the ``[serve]`` extra to Starlette and uvicorn; the format is small and a
test parses it.

>>> metrics = ServerMetrics()
>>> metrics.texts.inc(3)
>>> print(metrics.texts.render())
# HELP minilm_fast_texts_total Texts embedded (rows of successful responses).
# TYPE minilm_fast_texts_total counter
minilm_fast_texts_total 3
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence

__all__ = [
    "CONTENT_TYPE",
    "Counter",
    "Gauge",
    "Histogram",
    "ServerMetrics",
]

#: The Content-Type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_TEXTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_TOKENS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def _number(value: float) -> str:
    """A sample value: whole numbers without a fraction, infinities as Prometheus spells them."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{name}="{_escape(value)}"' for name, value in zip(names, values))
    return "{" + pairs + "}"


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def _header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> str:
        """The metric's lines, without a final newline."""
        raise NotImplementedError


class Counter(_Metric):
    """A count that only goes up, optionally split by label values.

    >>> counter = Counter("x_total", "Things.", labels=("code",))
    >>> counter.inc(labels=("200",)); counter.value(("200",))
    1.0
    """

    kind = "counter"

    def __init__(self, name: str, help_text: str, *, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text)
        self.label_names = tuple(labels)
        self._values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0, *, labels: tuple[str, ...] = ()) -> None:
        """Add ``amount`` (>= 0) to the series of ``labels``."""
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: tuple[str, ...] = ()) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> str:
        with self._lock:
            values = sorted(self._values.items())
        lines = self._header()
        for labels, value in values:
            lines.append(f"{self.name}{_labels(self.label_names, labels)} {_number(value)}")
        return "\n".join(lines)


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value -= amount

    def set(self, value: float) -> None:
        with self._lock:
            self._value = value

    def value(self) -> float:
        with self._lock:
            return self._value

    def render(self) -> str:
        return "\n".join([*self._header(), f"{self.name} {_number(self.value())}"])


class Histogram(_Metric):
    """Observations counted into fixed buckets (cumulative ``le`` buckets, ``_sum``, ``_count``).

    >>> histogram = Histogram("h", "Sizes.", buckets=(1, 10))
    >>> histogram.observe(3); histogram.observe(30)
    >>> print(histogram.render())  # doctest: +NORMALIZE_WHITESPACE
    # HELP h Sizes.
    # TYPE h histogram
    h_bucket{le="1"} 0
    h_bucket{le="10"} 1
    h_bucket{le="+Inf"} 2
    h_sum 33
    h_count 2
    """

    kind = "histogram"

    def __init__(self, name: str, help_text: str, *, buckets: Sequence[float]) -> None:
        super().__init__(name, help_text)
        self.bounds = tuple(sorted(buckets))
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf's own
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        slot = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._counts[slot] += 1
            self._sum += value

    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    def render(self) -> str:
        with self._lock:
            counts, total = list(self._counts), self._sum
        lines = self._header()
        running = 0
        for bound, count in zip((*self.bounds, math.inf), counts):
            running += count
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        lines.append(f"{self.name}_sum {_number(total)}")
        lines.append(f"{self.name}_count {running}")
        return "\n".join(lines)


class ServerMetrics:
    """Every metric ``GET /metrics`` shows, one set per app."""

    def __init__(self) -> None:
        self.requests = Counter(
            "minilm_fast_requests_total",
            "HTTP requests answered, by route and status code (499: the client went away).",
            labels=("route", "code"),
        )
        self.texts = Counter(
            "minilm_fast_texts_total", "Texts embedded (rows of successful responses)."
        )
        self.tokens = Counter(
            "minilm_fast_tokens_total",
            "Word pieces of the texts embedded, [CLS] and [SEP] included (usage.prompt_tokens).",
        )
        self.request_seconds = Histogram(
            "minilm_fast_request_duration_seconds",
            "Time from a successful /v1/embeddings request's arrival to its response body.",
            buckets=_SECONDS,
        )
        self.request_texts = Histogram(
            "minilm_fast_request_texts",
            "Texts per successful /v1/embeddings request.",
            buckets=_TEXTS,
        )
        self.batch_texts = Histogram(
            "minilm_fast_batch_texts",
            "Texts per engine batch (the requests' texts coalesced into one forward pass).",
            buckets=_TEXTS,
        )
        self.batch_calls = Histogram(
            "minilm_fast_batch_calls",
            "Encode calls (requests, or parts of large ones) sharing an engine batch.",
            buckets=_TEXTS,
        )
        self.batch_tokens = Histogram(
            "minilm_fast_batch_tokens",
            "Word pieces per engine batch.",
            buckets=_TOKENS,
        )
        self.batch_seconds = Histogram(
            "minilm_fast_batch_duration_seconds",
            "Compute time of an engine batch.",
            buckets=_SECONDS,
        )
        self.queue_wait = Histogram(
            "minilm_fast_queue_wait_seconds",
            "Time an encode call waited in the Encoder's queue before its batch ran.",
            buckets=_SECONDS,
        )
        self.queue_texts = Gauge(
            "minilm_fast_queue_texts",
            "Texts admitted and not yet answered, across all requests (--max-queue-texts).",
        )
        self.requests_in_flight = Gauge(
            "minilm_fast_requests_in_flight", "/v1/embeddings requests admitted, not answered."
        )

    def all(self) -> list[_Metric]:
        return [
            self.requests,
            self.texts,
            self.tokens,
            self.request_seconds,
            self.request_texts,
            self.batch_texts,
            self.batch_calls,
            self.batch_tokens,
            self.batch_seconds,
            self.queue_wait,
            self.queue_texts,
            self.requests_in_flight,
        ]

    def render(self) -> str:
        """The exposition text of every metric, ending in a newline."""
        return "\n".join(metric.render() for metric in self.all()) + "\n"
