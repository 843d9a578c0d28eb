"""``GET /metrics`` and ``GET /health``: the Prometheus text parses, and the counts move with the
requests served."""

from __future__ import annotations

import math
import re
from typing import Any

import httpx
import pytest
from serve_support import MODEL
from starlette.testclient import TestClient

from minilm_fast import Encoder
from minilm_fast.server import create_app
from minilm_fast.server.metrics import Counter, Histogram, ServerMetrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Prometheus' text format (0.0.4): samples by (name, labels), and each family's TYPE."""
    assert text.endswith("\n")
    samples: Samples = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(_LABEL.findall(labels or ""))
        key = (name, pairs)
        assert key not in samples, f"sample repeated: {line!r}"
        samples[key] = math.inf if value == "+Inf" else float(value)
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(base_url: str) -> Samples:
    reply = httpx.get(f"{base_url}/metrics", timeout=30)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples, types = parse(reply.text)
    for name, kind in types.items():  # every histogram: cumulative buckets ending in +Inf
        if kind != "histogram":
            continue
        buckets = sorted(
            (float(dict(labels)["le"]), count)
            for (sample, labels), count in samples.items()
            if sample == f"{name}_bucket"
        )
        counts = [count for _, count in buckets]
        assert buckets[-1][0] == math.inf and counts == sorted(counts)
        assert buckets[-1][1] == value(samples, f"{name}_count")
    return samples


def test_metrics_move_with_requests(base_url: str, encoder: Encoder) -> None:
    before = scrape(base_url)
    texts = ["metrics one", "metrics two", "metrics three"]
    reply = httpx.post(f"{base_url}/v1/embeddings", json={"model": MODEL, "input": texts})
    assert reply.status_code == 200
    bad = httpx.post(f"{base_url}/v1/embeddings", json={"model": MODEL, "input": []})
    assert bad.status_code == 400
    after = scrape(base_url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/embeddings"
    assert moved("minilm_fast_requests_total", route=route, code="200") == 1
    assert moved("minilm_fast_requests_total", route=route, code="400") == 1
    assert moved("minilm_fast_requests_total", route="/metrics", code="200") == 1
    assert moved("minilm_fast_texts_total") == 3
    assert moved("minilm_fast_tokens_total") == sum(encoder.count_tokens(texts))
    assert moved("minilm_fast_tokens_total") == reply.json()["usage"]["prompt_tokens"]
    assert moved("minilm_fast_request_duration_seconds_count") == 1
    assert moved("minilm_fast_request_texts_sum") == 3
    # the engine's batch reports (Encoder.on_batch): at least one batch held these texts
    assert moved("minilm_fast_batch_texts_count") >= 1
    assert moved("minilm_fast_batch_texts_sum") >= 3
    assert moved("minilm_fast_batch_calls_count") >= 1
    assert moved("minilm_fast_batch_tokens_sum") >= sum(encoder.count_tokens(texts))
    assert moved("minilm_fast_queue_wait_seconds_count") >= 1
    assert value(after, "minilm_fast_queue_texts") == 0
    assert value(after, "minilm_fast_requests_in_flight") == 0


def test_health(base_url: str, encoder: Encoder) -> None:
    reply = httpx.get(f"{base_url}/health", timeout=30)
    assert reply.status_code == 200
    assert reply.json() == {
        "status": "ok",
        "model": MODEL,
        "dim": 384,
        "compute": encoder.compute,
    }


def test_the_app_gives_the_encoder_its_hook_back(start_server: Any, encoder: Encoder) -> None:
    before = encoder.on_batch  # None, or the hook of the module's server, which stays called
    with start_server():
        assert encoder.on_batch is not None and encoder.on_batch != before
    assert encoder.on_batch == before


def test_an_app_serves_again_after_a_shutdown(encoder: Encoder) -> None:
    """The lifespan drains at shutdown and reopens at startup (a second TestClient, a reload)."""
    app = create_app(encoder, served_names=[MODEL])
    for _ in range(2):
        with TestClient(app) as client:
            assert client.post("/v1/embeddings", json={"input": "again"}).status_code == 200
        assert client.get("/health").status_code == 503  # no lifespan now: still draining


# --------------------------------------------------------------------------------------------
# The exposition format itself


def test_exposition_format() -> None:
    metrics = ServerMetrics()
    metrics.requests.inc(labels=("/v1/embeddings", "200"))
    metrics.requests.inc(2, labels=("/v1/embeddings", "503"))
    metrics.queue_wait.observe(0.0005)  # on a bound: counted in its bucket (le)
    metrics.queue_wait.observe(100.0)
    samples, types = parse(metrics.render())
    assert types["minilm_fast_requests_total"] == "counter"
    assert types["minilm_fast_queue_wait_seconds"] == "histogram"
    assert types["minilm_fast_queue_texts"] == "gauge"
    assert value(samples, "minilm_fast_requests_total", route="/v1/embeddings", code="503") == 2
    assert value(samples, "minilm_fast_queue_wait_seconds_bucket", le="0.0005") == 1
    assert value(samples, "minilm_fast_queue_wait_seconds_bucket", le="10") == 1
    assert value(samples, "minilm_fast_queue_wait_seconds_bucket", le="+Inf") == 2
    assert value(samples, "minilm_fast_queue_wait_seconds_sum") == pytest.approx(100.0005)


def test_label_values_are_escaped() -> None:
    counter = Counter("c_total", "C.", labels=("path",))
    counter.inc(labels=('a"b\\c\nd',))
    assert counter.render().splitlines()[-1] == 'c_total{path="a\\"b\\\\c\\nd"} 1'


def test_histogram_without_observations() -> None:
    histogram = Histogram("h", "H.", buckets=(1.0,))
    assert histogram.render().splitlines()[2:] == [
        'h_bucket{le="1"} 0',
        'h_bucket{le="+Inf"} 0',
        "h_sum 0",
        "h_count 0",
    ]
