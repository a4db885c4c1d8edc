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
# /v1/responses through a translated channel (an OpenAI-compatible preset): the same mock, the same model
"$MG" price set mock-translated --input 1 --output 2 >/dev/null
"$MG" channel add bench-translated --provider vllm --base-url http://127.0.0.1:18000/v1 \
  --models mock-translated --model-map mock-translated=mock-model --api-key-stdin <<<"sk-bench-upstream" >/dev/null 2>&1
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
# The Responses API row: the harness drives chat completions only, so wrk sends the same load (16
# connections, closed loop) to /v1/chat/completions and to /v1/responses on a translated channel, one
# after the other against the mock the harness leaves running; CPU is the server's own (from /proc).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
wrk_row() {  # name, path, body
  local lua="$DATA/$1.lua" before after out rps
  printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer %s"\n' "$3" "$KEY" >"$lua"
  before=$(cpu_ticks)
  out=$(taskset -c 1 wrk -t1 -c16 -d"${BENCH_DURATION:-6}"s -s "$lua" "http://127.0.0.1:$PORT$2" 2>&1)
  after=$(cpu_ticks)
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  local total non2xx
  total=$(awk '/requests in/{print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/{print $5}' <<<"$out")
  python3 -c "import sys; n=int(sys.argv[3]); t=(int(sys.argv[2])-int(sys.argv[1]))/100; print(f'| {sys.argv[4]} | {float(sys.argv[5]):.0f} | {t*1e6/max(n,1):.0f} | {sys.argv[6] or 0} |')" \
    "$before" "$after" "$total" "$1" "$rps" "$non2xx"
}
# the harness stopped its mock upstream: start one (no delay) for these rows
taskset -c 1 "$BENCH_HOME/venv-bench/bin/python" "$HARNESS/mock_upstream.py" --port 18000 --delay-ms 0 \
  >"$DATA/mock.log" 2>&1 &
MOCK_PID=$!
for _ in $(seq 1 100); do curl -fs -o /dev/null http://127.0.0.1:18000/health && break; sleep 0.1; done
echo
echo "| endpoint (wrk, 16 connections) | req/s | server CPU µs/req | non-2xx |"
echo "|---|---|---|---|"
wrk_row chat /v1/chat/completions '{"model":"mock-model","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
wrk_row responses /v1/responses '{"model":"mock-translated","max_output_tokens":16,"input":"hi"}'
kill -TERM "$MOCK_PID" 2>/dev/null; wait "$MOCK_PID" 2>/dev/null || true
ROWS=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")
echo "server healthy after the run: HTTP $ROWS"
