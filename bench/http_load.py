"""The HTTP load both service benchmarks send (bench/serve.py, bench/peers.py): concurrent
clients through a queue of requests, and lone requests one after another. Loopback only; the
caller bounds the count."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

Request = tuple[dict[str, Any], int]  # (JSON body, pairs it carries)
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # where int8 is much faster than fp32


def machine() -> str:
    """The CPU model, its cores and whether it has int8 dot-product instructions: int8's
    speed-up depends on them, so every figure names them."""
    model, flags = platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    int8 = [f for f in INT8_FLAGS if f in flags]
    return (f"{model}, {os.cpu_count()} cores, "
            f"{' '.join(int8) if int8 else 'no VNNI (int8 dot products emulated)'}")


@dataclass
class Result:
    pairs_per_s: float
    p50_ms: float


async def concurrent(url: str, path: str, requests: list[Request], clients: int) -> Result:
    """`clients` clients taking requests from one queue until it is empty; the first request is
    sent once beforehand, to warm the server. The generator shares the server's cores, so it is
    lean: aiohttp with every body encoded beforehand (httpx's async client, used before, spent
    most of a core on itself under 200 clients; see bench/overload.py)."""
    queue: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()
    for body, pairs in requests:
        queue.put_nowait((json.dumps(body).encode(), pairs))
    latencies: list[float] = []
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients),
                                     timeout=aiohttp.ClientTimeout(total=300)) as http:
        async def post(data: bytes) -> None:
            async with http.post(path, data=data, headers=headers) as answer:
                text = await answer.read()
                if answer.status != 200:
                    raise SystemExit(f"{url}{path} answered {answer.status}: {text[:300]!r}")

        async def worker() -> None:
            while not queue.empty():
                data, _ = queue.get_nowait()
                started = time.perf_counter()
                await post(data)
                latencies.append(time.perf_counter() - started)

        await post(json.dumps(requests[0][0]).encode())  # warm
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return Result(sum(n for _, n in requests) / elapsed, statistics.median(latencies) * 1000)


def one_at_a_time(url: str, path: str, bodies: list[dict[str, Any]]) -> Result:
    """Lone requests on one keep-alive connection, from the lightest client there is
    (http.client), so that the client's own cost stays out of the figure; the first warms the
    connection and is not counted."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    latencies = []
    for body in [bodies[0], *bodies]:
        started = time.perf_counter()
        connection.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        latencies.append(time.perf_counter() - started)
        if answer.status != 200:
            raise SystemExit(f"{url}{path} answered {answer.status}")
    connection.close()
    return Result(len(bodies) / sum(latencies[1:]), statistics.median(latencies[1:]) * 1000)
