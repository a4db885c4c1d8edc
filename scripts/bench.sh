#!/usr/bin/env bash
# `make bench`: model-go pinned to core 0, with a channel to the harness's mock upstream, measured through
# the full pipeline (auth, limits, reserve, settle, usage row) beside the thin baseline in one run
# (../shared/bench/run.sh). Prints section (v) of the report. Binds and targets 127.0.0.1 only.
#   BENCH_ROUNDS (default 1), BENCH_DURATION seconds (default 6), BENCH_TESTS (default tput,lat100,lat500,stream)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HARNESS=${MODELGO_BENCH_HARNESS:-$ROOT/../shared/bench}
[ -x "$HARNESS/run.sh" ] || [ -f "$HARNESS/run.sh" ] || { echo "bench harness not found at $HARNESS" >&2; exit 2; }
BENCH_HOME=${BENCH_HOME:-$HOME/.cache/model-go-bench}
export BENCH_HOME
if [ ! -x "$BENCH_HOME/venv-bench/bin/python" ] || ! command -v wrk >/dev/null; then
  echo "installing the benchmark harness into $BENCH_HOME (wrk, a venv; no LiteLLM or Portkey)"
  SKIP_LITELLM=1 SKIP_PORTKEY=1 bash "$HARNESS/setup.sh"
fi

DATA=$(mktemp -d -t model-go-bench.XXXXXX)
PORT=${BENCH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export MODELGO_DATA_DIR=$DATA MODELGO_PORT=$PORT MODELGO_HOST=127.0.0.1 MODELGO_DEMO=false
MG=$ROOT/.venv/bin/model-go
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT

echo "setting up a bench user, price and channel in $DATA"
"$MG" user add bench --email bench@example.com >/dev/null
"$MG" credit add bench 1000000 >/dev/null
"$MG" price set mock-model --input 1 --output 2 >/dev/null
"$MG" channel add bench-mock --provider openai --base-url http://127.0.0.1:18000/v1 --models mock-model \
  --api-key-stdin <<<"sk-bench-upstream" >/dev/null 2>&1
KEY=$("$MG" key add bench --name bench 2>/dev/null | tail -n1)

taskset -c 0 "$MG" serve >"$DATA/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do  # up to 60 s: a loaded machine starts slowly
  curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
kill -0 "$SERVER_PID" 2>/dev/null && curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || {
  cat "$DATA/server.log"; exit 1; }
echo "model-go pid $SERVER_PID on core 0; running the harness"

OUT="$BENCH_HOME/results/model-go-$(date +%Y%m%d-%H%M%S)"
bash "$HARNESS/run.sh" "http://127.0.0.1:$PORT/v1/chat/completions" "$KEY" "$SERVER_PID" \
  --name model-go --rounds "${BENCH_ROUNDS:-1}" --duration "${BENCH_DURATION:-6}" \
  --tests "${BENCH_TESTS:-tput,lat100,lat500,stream}" --out "$OUT" >"$DATA/bench.log" 2>&1 || {
  tail -n 40 "$DATA/bench.log"; exit 1; }
REPORT="$OUT/report.md"
echo "full report: $REPORT"
awk '/^## \(v\)/{p=1} /^## \(iv\)/{p=0} p' "$REPORT"
ROWS=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")
echo "server healthy after the run: HTTP $ROWS"
