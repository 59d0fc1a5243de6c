#!/usr/bin/env bash
# The first `make serve` on a fresh clone, timed to the first 200 from /readyz.
#   bench/first_run.sh [WORKDIR]     (default /tmp/first-run; ../shared must exist beside this repo)
# Clones this repository's HEAD into WORKDIR/alignserve with ../shared beside it, runs
# `make serve` from nothing, polls /readyz, asks /v1/classify and /v1/reward/compare once,
# then stops the server; then times three later starts of the same clone. Needs port 3000 free
# and nothing else running, for a fair time.
set -u
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/first-run}"
rm -rf "$work" && mkdir -p "$work" && ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"
git clone -q "$repo" "$work/alignserve"
cd "$work/alignserve"
# `make serve` in its own process group, its output appended to $1, until /readyz answers 200
# (polled every $2 s); then "$3 after N s" to ready.txt. Sets pid for stop.
serve() {
  local start
  start=$(date +%s.%N)
  setsid make serve >> "$1" 2>&1 &
  pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:3000/readyz)" = "200" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "make serve exited; see $1"; exit 1; }
    sleep "$2"
  done
  echo "$3 after $(echo "$(date +%s.%N) - $start" | bc) s" | tee -a "$work/ready.txt"
}
stop() { kill -TERM -- -"$pid" 2>/dev/null; sleep 5; kill -KILL -- -"$pid" 2>/dev/null; }

serve "$work/serve.log" 2 "ready"
grep -a "stage\|stages done\|int8" "$work/serve.log"
curl -s 127.0.0.1:3000/v1/classify -H 'content-type: application/json' \
  -d '{"inputs": ["I still have not received my new card"], "top_k": 3}'; echo
rude="I have no idea why you would even ask me that, and frankly I cannot be bothered to look"
rude="$rude it up. Maybe read the website like everyone else instead of wasting my time."
curl -s 127.0.0.1:3000/v1/reward/compare -H 'content-type: application/json' -d "{\"prompt\":
  \"Do you ship to Canada?\", \"response_a\": \"Yes, in 5-8 days.\", \"response_b\": \"$rude\"}"; echo
stop
# Later starts: the same clone, the store full, timed the same way.
for n in 1 2 3; do
  serve "$work/serve-later.log" 0.2 "later start $n ready"
  stop
done
true
