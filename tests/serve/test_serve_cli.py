"""``minilm-fast serve`` as a real process: it starts, serves, and on SIGTERM answers every
request in flight before it exits 0; its usage errors, a taken port, a missing extra."""

from __future__ import annotations

import base64
import concurrent.futures
import pathlib
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from serve_support import MODEL

from minilm_fast import Encoder
from minilm_fast.cli import main

_URL = re.compile(r"serving \S+ at (http://127\.0\.0\.1:\d+)/v1")
_IN_FLIGHT = re.compile(r"^minilm_fast_requests_in_flight (\S+)$", re.MULTILINE)


class ServeProcess:
    """``python -m minilm_fast serve`` on a free port, its stderr collected as it comes."""

    def __init__(self, model_dir: pathlib.Path, *options: str) -> None:
        command = [sys.executable, "-m", "minilm_fast", "serve", "--model", str(model_dir)]
        command += ["--offline", "--port", "0", "--threads", "2", "--served-model-name", MODEL]
        self.process = subprocess.Popen(
            [*command, "--no-access-log", *options],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._urls: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            found = _URL.search(line)
            if found:
                self._urls.put(found.group(1))

    def url(self) -> str:
        try:
            return self._urls.get(timeout=60)
        except queue.Empty:
            raise AssertionError("no startup line in 60 s:\n" + self.stderr()) from None

    def stderr(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def serve_process(model_dir: pathlib.Path) -> Iterator[type[ServeProcess]]:
    started: list[ServeProcess] = []

    def start(*options: str) -> ServeProcess:
        server = ServeProcess(model_dir, *options)
        started.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in started:
        server.stop()


def test_sigterm_answers_requests_in_flight_then_exits_0(
    serve_process: type[ServeProcess], encoder: Encoder
) -> None:
    server = serve_process("--max-batch-tokens", "2048")
    url = server.url()
    assert httpx.get(f"{url}/health", timeout=30).json()["model"] == MODEL

    words = "the quick brown fox jumps over a lazy dog while birds sing in the old trees".split()

    def text(request: int, row: int) -> str:  # ~110 word pieces, different for every row
        body = " ".join(words[(request + row + k) % len(words)] for k in range(100))
        return f"request {request} text {row}: {body}"

    requests = [[text(request, row) for row in range(8)] for request in range(4)]
    finished: dict[int, float] = {}

    def send(index: int) -> httpx.Response:
        body = {"model": MODEL, "input": requests[index], "encoding_format": "base64"}
        reply = httpx.post(f"{url}/v1/embeddings", json=body, timeout=60)
        finished[index] = time.monotonic()
        return reply

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(send, index) for index in range(len(requests))]
        deadline = time.monotonic() + 30
        while True:  # every request admitted: they are all in flight now
            metrics = httpx.get(f"{url}/metrics", timeout=30).text
            in_flight = float(_IN_FLIGHT.search(metrics).group(1))  # type: ignore[union-attr]
            if in_flight == len(requests) or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:  # a new request now is refused: 503 while draining, or no listener any more
            late = httpx.post(f"{url}/v1/embeddings", json={"input": ["late"]}, timeout=30)
            assert late.status_code == 503 and late.json()["error"]["code"] == "shutting_down"
        except httpx.TransportError:
            pass
        replies = [future.result(timeout=60) for future in futures]

    assert in_flight == len(requests), "the requests were not all admitted in 30 s"
    assert max(finished.values()) > signalled, "every request ended before SIGTERM"
    for texts, reply in zip(requests, replies):
        assert reply.status_code == 200, reply.text
        rows = [
            np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
            for item in reply.json()["data"]
        ]
        np.testing.assert_allclose(np.array(rows), encoder.encode(texts), atol=1e-6)
    assert server.process.wait(timeout=60) == 0, server.stderr()
    assert "minilm-fast: stopped" in server.stderr()


def test_a_taken_port_is_an_error(serve_process: type[ServeProcess]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve_process("--port", str(port))  # the later --port wins
        assert server.process.wait(timeout=60) == 1
    assert "minilm-fast: error: the server did not start" in server.stderr()


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--max-input-texts", "100", "--max-queue-texts", "10"]) == 2
    assert "must be at least max_input_texts" in capsys.readouterr().err
    assert main(["serve", "--port", "-1"]) == 2
    assert main(["serve", "--max-body-bytes", "0"]) == 2


def test_without_the_extra_it_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "from minilm_fast.cli import main; sys.exit(main(['serve']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1, result.stderr
    assert "pip install 'minilm-fast[serve]'" in result.stderr
    assert "starlette" in result.stderr
