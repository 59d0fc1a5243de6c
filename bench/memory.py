"""Resident memory of one served replica: the service with the store's default models, after
40 requests of 32 items (20 to /v1/reward/score, 20 to /v1/moderate), summed over the server's
processes (BentoML's arbiter and the service worker).

    .venv/bin/python -m bench.memory

Traffic goes to 127.0.0.1 only, bounded in count.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import httpx

from service.local import serving

REQUESTS, ITEMS = 20, 32


def process_tree(root: int) -> dict[int, tuple[str, int]]:
    """pid -> (command line, resident KiB) for `root` and every process below it."""
    listing = subprocess.run(["ps", "-eo", "pid=,ppid=,rss=,args="], capture_output=True,
                             text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, int]] = {}
    for line in listing.splitlines():
        pid, ppid, rss, args = line.split(None, 3)
        children.setdefault(int(ppid), []).append(int(pid))
        info[int(pid)] = (args, int(rss))
    tree: dict[int, tuple[str, int]] = {}
    todo = list(children.get(root, []))
    while todo:
        node = todo.pop()
        tree[node] = info[node]
        todo += children.get(node, [])
    return tree


def main() -> None:
    response = "Sorry about that. I have refunded the duplicate charge. " * 3
    items = [{"prompt": "My card was charged twice, can you help?", "response": response}] * ITEMS
    with serving(Path(tempfile.mkdtemp()) / "serve.log") as url, \
            httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(REQUESTS):
            client.post("/v1/reward/score", json={"items": items}).raise_for_status()
            client.post("/v1/moderate", json={"inputs": [response] * ITEMS}).raise_for_status()
        graphs = {m["name"]: m["quantisation"] for m in client.get("/v1/models").json()["models"]}
        tree = {pid: row for pid, row in process_tree(os.getpid()).items()
                if not row[0].startswith("ps ")}
    for args, rss in tree.values():
        print(f"{rss / 2**20:5.2f} GB  {args[:90]}")
    print(f"graphs {graphs}; {2 * REQUESTS} requests of {ITEMS} items; resident in all "
          f"{sum(rss for _, rss in tree.values()) / 2**20:.2f} GB")


if __name__ == "__main__":
    main()
