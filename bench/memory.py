"""Resident memory of one served replica: the service with the store's default models, after a
mixed load (32-item requests to /v1/reward/score, /v1/moderate and /v1/classify in turn),
summed over the server's processes (BentoML's arbiter and the service worker).

    .venv/bin/python -m bench.memory                          # 40 requests
    .venv/bin/python -m bench.memory --seconds 600            # a 10-minute mixed load
    .venv/bin/python -m bench.memory --seconds 120 --compare ALIGNSERVE_CPU_ARENA=true \
        ALIGNSERVE_CPU_ARENA=false                            # settings side by side, one run

Each setting gets its own server, one after the other. Traffic goes to 127.0.0.1 only, bounded
in count and time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import httpx

from service.local import descendants, serving

ITEMS = 32
RESPONSE = "Sorry about that. I have refunded the duplicate charge. " * 3


def process_tree(root: int, include_root: bool = False) -> dict[int, tuple[str, int]]:
    """pid -> (command line, resident KiB) for every process below `root` (the server's
    processes: BentoML's arbiter and its service worker, which runs in a session of its own),
    and `root` itself with `include_root`."""
    tree: dict[int, tuple[str, int]] = {}
    for pid in [root, *descendants(root)] if include_root else descendants(root):
        proc = Path("/proc") / str(pid)
        try:
            args = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            rss = next(int(line.split()[1]) for line in proc.joinpath("status").read_text()
                       .splitlines() if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue  # gone meanwhile, or a kernel thread without memory of its own
        tree[pid] = (args, rss)
    return tree


def mixed_load(client: httpx.Client, requests: int, seconds: float) -> int:
    """Reward, moderation and intent requests in turn until `requests` are done or `seconds`
    have passed (whichever is later); returns how many were sent."""
    items = [{"prompt": "My card was charged twice, can you help?", "response": RESPONSE}] * ITEMS
    served = {m["task"] for m in client.get("/v1/models").json()["models"]}
    calls: list[tuple[str, dict[str, object]]] = [("/v1/reward/score", {"items": items})]
    if "multilabel" in served:
        calls.append(("/v1/moderate", {"inputs": [RESPONSE] * ITEMS}))
    if "multiclass" in served:
        calls.append(("/v1/classify", {"inputs": [RESPONSE] * ITEMS, "top_k": 3}))
    sent, started = 0, time.monotonic()
    while sent < requests or time.monotonic() - started < seconds:
        path, body = calls[sent % len(calls)]
        client.post(path, json=body).raise_for_status()
        sent += 1
    return sent


def measure(settings: dict[str, str], requests: int, seconds: float) -> float:
    label = " ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"
    with serving(Path(tempfile.mkdtemp()) / "serve.log", 180, **settings) as url, \
            httpx.Client(base_url=url, timeout=120) as client:
        sent = mixed_load(client, requests, seconds)
        graphs = {m["name"]: m["quantisation"] for m in client.get("/v1/models").json()["models"]}
        tree = process_tree(os.getpid())
    total = sum(rss for _, rss in tree.values()) / 2**20
    print(f"[{label}] graphs {graphs}; {sent} requests of {ITEMS} items")
    for args, rss in tree.values():
        print(f"  {rss / 2**20:5.2f} GB  {args[:90]}")
    print(f"  resident in all {total:.2f} GB")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--compare", nargs="*", default=[], metavar="KEY=VALUE",
                        help="Settings, one server each (default: one server, the defaults).")
    args = parser.parse_args()
    configs = [dict([c.split("=", 1)]) for c in args.compare] or [{}]
    results = {" ".join(f"{k}={v}" for k, v in c.items()) or "defaults":
               measure(c, args.requests, args.seconds) for c in configs}
    if len(results) > 1:
        print("; ".join(f"{k}: {v:.2f} GB" for k, v in results.items()))


if __name__ == "__main__":
    main()
