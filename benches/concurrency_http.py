"""The HTTP side of benches/concurrency.py: a server in its own process, and a lean load
generator for it.

- :class:`Server` starts ``python -m minilm_fast serve`` (or infinity-emb), waits for its
  ``/health``, reads its CPU time and memory from ``/proc`` and stops it.
- :func:`drive` runs N clients on one asyncio event loop, each on one keep-alive HTTP/1.1
  connection, one text per request, back to back. The requests are built once as bytes
  (:func:`build_requests`); a response is read as its status line, headers and
  ``Content-Length`` body (chunked bodies are read too), never parsed: the client must not
  take the CPU the server needs. Its own CPU time is reported beside the server's.

Only loopback addresses are used. Standard library only.
"""

from __future__ import annotations

import array
import asyncio
import base64
import itertools
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process in MB, from /proc/PID/status."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out["rss_mb" if key == "VmRSS" else "peak_mb"] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Every descendant of a process (a server may fork workers)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children", encoding="ascii") as f:
                    kids = [int(k) for k in f.read().split()]
                found.extend(kids)
                todo.extend(kids)
        except OSError:
            continue
    return found


class ServerError(RuntimeError):
    pass


class Server:
    """One HTTP server process on a loopback port: started, checked healthy, measured, stopped.

    ``route`` is the embeddings path (``/v1/embeddings`` for minilm-fast serve, ``/embeddings``
    for infinity-emb); ``model`` the name sent in each request, asked of the server's models
    route when it has one."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        env: dict[str, str],
        port: int,
        route: str,
        models_route: str,
        log: Path,
        model: str,
        timeout_s: float = 180.0,
    ) -> None:
        self.name, self.port, self.route, self.model = name, port, route, model
        self.cmd = list(cmd)
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("w", encoding="utf-8")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        try:
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.start_s = time.perf_counter() - t0
        self.idle = self.memory()
        answer = self.get(models_route)
        if isinstance(answer, dict) and answer.get("data"):
            self.model = str(answer["data"][0].get("id", model))

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited ({self.proc.returncode}) before it was healthy: "
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.25)
        raise ServerError(f"{self.name}: no healthy /health after {timeout_s:.0f} s")

    def log_tail(self, lines: int = 3) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}{path}", timeout=5) as r:
                return json.loads(r.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def embed(self, text: str) -> list[float]:
        """One request, answer decoded: the vector the server gives for `text`."""
        body = json.dumps(
            {"input": text, "model": self.model, "encoding_format": "base64"}
        ).encode()
        req = urllib.request.Request(
            f"http://{HOST}:{self.port}{self.route}",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = json.loads(r.read())
        vec = answer["data"][0]["embedding"]
        if isinstance(vec, str):
            floats = array.array("f")  # little-endian float32, as x86 and ARM hosts have it
            floats.frombytes(base64.b64decode(vec))
            return list(floats)
        return [float(x) for x in vec]

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def cpu(self) -> float:
        return sum(c for c in (proc_cpu(p) for p in self.pids()) if c is not None)

    def memory(self) -> dict[str, float]:
        """RSS and peak RSS (VmHWM) of the server, its child processes added."""
        total: dict[str, float] = {"rss_mb": 0.0, "peak_mb": 0.0}
        for p in self.pids():
            for k, v in proc_status(p).items():
                total[k] += v
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def build_requests(texts: Sequence[str], port: int, route: str, model: str) -> list[bytes]:
    """One ready-to-send HTTP/1.1 request per text (OpenAI-style embeddings, base64)."""
    out = []
    for text in texts:
        body = json.dumps(
            {"input": text, "model": model, "encoding_format": "base64"}, ensure_ascii=False
        ).encode()
        head = (
            f"POST {route} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("ascii")
        out.append(head + body)
    return out


class ResponseError(RuntimeError):
    pass


async def _read_response(reader: asyncio.StreamReader) -> bool:
    """Read one response; True when the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, rest = head.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or parts[1] != b"200":
        body = await reader.read(300)
        raise ResponseError(f"{status_line.decode(errors='replace')}: {body[:300]!r}")
    lowered = rest.lower()
    length = None
    chunked = b"transfer-encoding: chunked" in lowered
    at = lowered.find(b"content-length:")
    if at >= 0:
        length = int(lowered[at + 15 : lowered.find(b"\r\n", at)].strip())
    if length is not None:
        await reader.readexactly(length)
    elif chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()  # the body runs to the connection's end
        return False
    return b"connection: close" not in lowered


async def _drive(
    port: int, requests: Sequence[bytes], clients: int, warmup: float, duration: float, start: int
) -> dict[str, Any]:
    counter = itertools.count(start)
    n = len(requests)
    calls: list[tuple[float, float]] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    warm = t0 + warmup
    end = warm + duration

    async def client() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while True:
                a = time.perf_counter()
                if a >= end:
                    break
                writer.write(requests[next(counter) % n])
                try:
                    keep = await _read_response(reader)
                except (ResponseError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if len(errors) >= 50:  # the server is failing: stop, the report says so
                        break
                    keep = False
                else:
                    calls.append((a, time.perf_counter()))
                if not keep:
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    done = sum(1 for a, b in calls if warm <= b <= end)
    return {
        "calls": done,
        "window": end - warm,
        "ms": [round((b - a) * 1e3, 4) for a, b in calls if a >= warm],
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def drive(
    server: Server,
    requests: Sequence[bytes],
    clients: int,
    warmup: float,
    duration: float,
    start: int = 0,
) -> dict[str, Any]:
    """`clients` keep-alive connections, one text per request, for `warmup` + `duration` s.
    Same answer as the in-process workers' (calls, window, ms), with the server's CPU time
    (`cpu`) and the client's own (`client_cpu`) over the whole run (`wall`)."""
    s0, c0, t0 = server.cpu(), time.process_time(), time.perf_counter()
    answer = asyncio.run(_drive(server.port, requests, clients, warmup, duration, start))
    answer["wall"] = time.perf_counter() - t0
    answer["cpu"] = server.cpu() - s0
    answer["client_cpu"] = time.process_time() - c0
    return answer
