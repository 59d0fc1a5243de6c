"""Overload: the service at many times its capacity, one server per setting, side by side.

    .venv/bin/python -m bench.overload
    .venv/bin/python -m bench.overload --clients 200 --seconds 45 \
        --compare ALIGNSERVE_MAX_QUEUE_WAIT_MS=600000 ALIGNSERVE_MAX_QUEUE_WAIT_MS=5000 \
        --out bench/results/overload-cpu.json
    git worktree add /tmp/before <commit> && .venv/bin/python -m bench.overload \
        --compare "" --retry at-once --against /tmp/before --rounds 3 --out ...

For each setting, its own `python -m service` on 127.0.0.1 with the store's reward model only,
fed 32-pair /v1/reward/score requests of real hh-rlhf pairs:
1. capacity: 4 clients for --seconds / 3: pairs per second answered;
2. overload, once per --retry mode: --clients clients for --seconds, each sending its next
   request as soon as the last is answered (`at-once`: a retry storm) or, after a 429, once its
   Retry-After has passed (`after`: what the header asks of a client): every status; goodput
   (pairs answered 200 per second) as a share of capacity; the latency of admitted (200)
   requests, p50 and p99, as the clients saw it and in the server (its Server-Timing total),
   and how many of them took longer than the deadline (ALIGNSERVE_MAX_QUEUE_WAIT_MS: a burst
   admits about a hundred, so its p99 is nearly its maximum, and the count says more);
   how fast a 429 came back; the Retry-After values it carried; the CPU seconds the load
   generator itself used;
3. recovery: one request once the burst ends, and its latency.

`--against DIR` compares code rather than settings: each setting is measured on this checkout's
service and on DIR's (a git worktree of an earlier commit), taking turns, --rounds times, with
this checkout's load generator for both.

ALIGNSERVE_MAX_QUEUE_WAIT_MS=600000 (the largest it takes) stands for the admission before it
existed (by queued items only, ALIGNSERVE_MAX_QUEUED_ITEMS); the default is 5,000 ms. Traffic
goes to 127.0.0.1 only, bounded by --clients and --seconds; the load generator shares the two
cores with the service, as a sidecar would. So it has to be lean: aiohttp with every body
encoded once beforehand. httpx's client, which this used before, spent 23 of 26 CPU seconds of
a 20-second storm on itself (one of the two cores; aiohttp: 2 s), and the figures measured its
own starvation more than the service. Each burst reports the generator's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np

from bench.http_load import machine
from bench.serve import Pair, parse_setting, real_pairs
from service.client import server_timing
from service.local import REPO, StartError, checkout, serving_checkout
from service.settings import Settings

PER_REQUEST = 32
RETRY_MODES = ("at-once", "after")
# (status, started at s, latency s, Retry-After, the server's own total s from Server-Timing)
Seen = tuple[int, float, float, str | None, float | None]


def body(pairs: list[Pair], k: int) -> dict[str, Any]:
    chunk = [pairs[(k * PER_REQUEST + i) % len(pairs)] for i in range(PER_REQUEST)]
    return {"items": [{"prompt": p, "response": r} for p, r in chunk]}


async def drive(url: str, pairs: list[Pair], clients: int, seconds: float,
                retry: str = "at-once") -> tuple[list[Seen], float]:
    """Every request `clients` closed-loop clients sent within `seconds` (a request in flight
    at the end is waited for; status 0 is a connection error), and the CPU seconds this
    process spent meanwhile. `retry`: after a 429, send again at once, or after its
    Retry-After."""
    bodies = [json.dumps(body(pairs, k)).encode() for k in range(len(pairs))]
    headers = {"content-type": "application/json"}
    seen: list[Seen] = []
    cpu = time.process_time()
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients),
                                     timeout=aiohttp.ClientTimeout(total=600)) as http:
        start = time.perf_counter()

        async def client(c: int) -> None:
            k = c
            while (sent := time.perf_counter()) - start < seconds:
                try:
                    async with http.post("/v1/reward/score", data=bodies[k % len(bodies)],
                                         headers=headers) as response:
                        await response.read()
                        status, after = response.status, response.headers.get("retry-after")
                        total = server_timing(response.headers.get("server-timing")).get("total")
                        server = None if total is None else total / 1000
                except aiohttp.ClientError:  # a connection reset or refused: status 0
                    status, after, server = 0, None, None
                seen.append((status, sent - start, time.perf_counter() - sent, after, server))
                k += clients
                if retry == "after" and status == 429 and after:
                    await asyncio.sleep(float(after))

        await asyncio.gather(*(client(c) for c in range(clients)))
    return seen, time.process_time() - cpu


def summary(seen: list[Seen], seconds: float, capacity: float | None,
            generator_cpu_s: float, deadline_s: float) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for status, *_ in seen:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    admitted = [latency for status, _, latency, _, _ in seen if status == 200]
    refused = [latency for status, _, latency, _, _ in seen if status == 429]
    retry = [float(r) for status, _, _, r, _ in seen if status == 429 and r is not None]
    # An admitted request's time in the server (from Server-Timing), and the rest of what its
    # client waited: the kernel's queue and the event loop before the app read it, the answer's
    # way back, and the client's own loop.
    server = [total for status, _, _, _, total in seen if status == 200 and total is not None]
    outside = [latency - total for status, _, latency, _, total in seen
               if status == 200 and total is not None]
    wall = max(seconds, max(start + latency for _, start, latency, _, _ in seen))
    goodput = len(admitted) * PER_REQUEST / wall

    def pct(values: list[float], q: float) -> float | None:
        return float(np.percentile(values, q)) if values else None

    return {"requests": len(seen), "statuses": statuses, "wall_s": wall,
            "goodput_pairs_per_s": goodput,
            "goodput_share_of_capacity": goodput / capacity if capacity else None,
            "admitted_p50_s": pct(admitted, 50), "admitted_p99_s": pct(admitted, 99),
            "admitted_max_s": max(admitted) if admitted else None,
            "admitted_server_p50_s": pct(server, 50), "admitted_server_p99_s": pct(server, 99),
            "admitted_server_max_s": max(server) if server else None,
            "deadline_s": deadline_s,
            "admitted_late": sum(latency > deadline_s for latency in admitted),
            "admitted_late_in_server": sum(total > deadline_s for total in server),
            # when in the burst the late ones were sent: its first instant, or throughout
            "admitted_late_sent_at_s": [round(start, 1) for status, start, latency, _, _ in seen
                                        if status == 200 and latency > deadline_s],
            "admitted_outside_server_p50_s": pct(outside, 50),
            "admitted_outside_server_p99_s": pct(outside, 99),
            "refused_p50_ms": (pct(refused, 50) or 0) * 1000 if refused else None,
            "retry_after_s": {"min": min(retry), "median": statistics.median(retry),
                              "max": max(retry)} if retry else None,
            "load_generator_cpu_s": generator_cpu_s}


def run_setting(pairs: list[Pair], setting: dict[str, str], clients: int, seconds: float,
                tag: str, retries: list[str], code: Path | None = None) -> dict[str, Any]:
    """One server (of `code`'s checkout, else this one's) with `setting`: capacity, then a burst
    per retry mode."""
    settings = {"ALIGNSERVE_REWARD_MODEL": tag, "ALIGNSERVE_MODERATION_MODEL": "",
                "ALIGNSERVE_INTENT_MODEL": "", **setting}
    deadline_s = float(settings.get("ALIGNSERVE_MAX_QUEUE_WAIT_MS",
                                    Settings.model_fields["max_queue_wait_ms"].default)) / 1000
    with tempfile.TemporaryDirectory(prefix="alignserve-overload-") as tmp, serving_checkout(
            code, Path(tmp) / "serve.log", settings) as url:
        httpx.post(f"{url}/v1/reward/score", json=body(pairs, 0), timeout=120)  # warm
        base, base_cpu = asyncio.run(drive(url, pairs, 4, seconds / 3))
        capacity = summary(base, seconds / 3, None, base_cpu, deadline_s)
        print(f"  capacity: {capacity['goodput_pairs_per_s']:.1f} pairs/s "
              f"(4 clients, statuses {capacity['statuses']})", flush=True)
        bursts = {}
        for retry in retries:
            seen, cpu = asyncio.run(drive(url, pairs, clients, seconds, retry))
            burst = summary(seen, seconds, capacity["goodput_pairs_per_s"], cpu, deadline_s)
            started = time.perf_counter()
            after = httpx.post(f"{url}/v1/reward/score", json=body(pairs, 1), timeout=120)
            burst["recovery"] = {"status": after.status_code,
                                 "latency_s": time.perf_counter() - started}
            report(retry, burst)
            bursts[retry] = burst
    return {"setting": setting, "capacity_pairs_per_s": capacity["goodput_pairs_per_s"],
            "overload": bursts}


def report(retry: str, burst: dict[str, Any]) -> None:
    after = burst["retry_after_s"]
    after_text = "-" if after is None else f"{after['min']:g}-{after['max']:g} s"
    admitted = ("nothing admitted" if burst["admitted_p50_s"] is None else
                f"admitted p50 {burst['admitted_p50_s']:.2f} s, p99 "
                f"{burst['admitted_p99_s']:.2f} s")
    if burst["admitted_server_p50_s"] is not None:
        admitted += (f" (in the server: p50 {burst['admitted_server_p50_s']:.2f} s, p99 "
                     f"{burst['admitted_server_p99_s']:.2f} s, max "
                     f"{burst['admitted_server_max_s']:.2f} s)")
        admitted += (f"; past the {burst['deadline_s']:g} s deadline: "
                     f"{burst['admitted_late']} at the clients, "
                     f"{burst['admitted_late_in_server']} in the server")
        if burst["admitted_late_sent_at_s"]:
            sent = ", ".join(f"{at:g}" for at in burst["admitted_late_sent_at_s"])
            admitted += f" (sent {sent} s into the burst)"
    print(f"  overload, retrying {retry}: {burst['requests']} requests {burst['statuses']}; "
          f"goodput {burst['goodput_pairs_per_s']:.1f} pairs/s "
          f"({burst['goodput_share_of_capacity']:.0%} of capacity); {admitted}; 429 in "
          f"{burst['refused_p50_ms'] or 0:.0f} ms (p50), Retry-After {after_text}; load "
          f"generator {burst['load_generator_cpu_s']:.1f} CPU s; then "
          f"{burst['recovery']['status']} in {burst['recovery']['latency_s']:.2f} s",
          flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="reward", help="store tag of the reward model")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--compare", nargs="*", default=["ALIGNSERVE_MAX_QUEUE_WAIT_MS=600000",
                                                         "ALIGNSERVE_MAX_QUEUE_WAIT_MS=5000"],
                        help="settings, KEY=VALUE[,KEY=VALUE], one server each")
    parser.add_argument("--retry", nargs="+", choices=RETRY_MODES, default=list(RETRY_MODES),
                        help="how the clients retry a 429: at once, or after its Retry-After "
                        "(one burst each)")
    parser.add_argument("--against", type=Path, default=None, metavar="DIR",
                        help="another checkout (a git worktree of an earlier commit): each "
                        "setting also runs on its service, taking turns with this one's")
    parser.add_argument("--rounds", type=int, default=1, help="times each server is measured")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 400 or not 1 <= args.seconds <= 300:
        raise SystemExit("--clients 1..400 and --seconds 1..300: the load stays bounded")
    if not 1 <= args.rounds <= 10:
        raise SystemExit("--rounds 1..10")
    codes: list[Path | None] = [None]
    if args.against is not None:
        try:
            codes = [checkout(args.against), None]  # the earlier code first in each round
        except StartError as exc:
            raise SystemExit(f"--against: {exc}") from None
    settings = [(spec, parse_setting(spec)) for spec in args.compare]

    pairs = real_pairs(512)
    results = []
    for round_ in range(1, args.rounds + 1):
        for spec, setting in settings:
            for code in codes:
                tree = code or REPO
                version = commit(tree)
                print(f"round {round_}, {spec or 'the defaults'}, code of {version} "
                      f"({tree}): {args.clients} clients for {args.seconds:g} s", flush=True)
                results.append({"round": round_, "code": str(tree), "commit": version,
                                **run_setting(pairs, setting, args.clients, args.seconds,
                                              args.model, args.retry, code)})
    if args.out:
        args.out.write_text(json.dumps({
            "clients": args.clients, "seconds": args.seconds, "per_request": PER_REQUEST,
            "client": "aiohttp, bodies encoded beforehand",
            "machine": machine(),
            "results": results}, indent=1) + "\n")


def commit(tree: Path) -> str:
    """The checkout's commit, with '+' when its tracked files differ from it."""
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(tree), "diff", "--quiet", "HEAD"]).returncode
    return head + ("+" if dirty else "")


if __name__ == "__main__":
    main()
