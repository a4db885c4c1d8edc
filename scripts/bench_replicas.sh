#!/usr/bin/env bash
# `make bench`, second part: does the PostgreSQL + Redis path keep one replica fast, and do two
# replicas on two cores scale? The same wrk load as the harness's `tput` test (lib/post.lua, 64
# connections, closed loop) against, in one run:
#   the thin baseline     the harness's thin-uvicorn-aiohttp-sqlite gateway, core 0
#   single node (SQLite)  `model-go serve` on an embedded SQLite database, core 0
#   one replica           replica A on PostgreSQL + Redis, core 0 (replica B idle on core 1)
#   two replicas          A on core 0 and B on core 1, one wrk per replica with half the connections
# then the memory of each replica (VmRSS): after a 1,000-request warm-up, after 10,000 requests,
# while and after 1,000 concurrent streams, after another 10,000 requests, after the throughput runs.
# The memory steps run first, so the "after warm-up" figure is a nearly fresh process.
#
# Core split: in the first three rows wrk and the mock upstream are pinned to core 1, as in the
# harness; in the two-replica row both cores run a replica, so wrk, the mock, PostgreSQL and Redis
# compete with them (unpinned), which costs the two-replica row some of its throughput.
# PostgreSQL and Redis are never pinned; their CPU is read from /proc for the whole servers
# (other users of this machine included).
#
# Binds and targets 127.0.0.1 only; every load step is bounded in count and time. Creates one
# PostgreSQL database and one Redis key prefix, and drops both at exit; stops only the processes
# it started, by PID.
#   BENCH_DURATION seconds per throughput row (default 6), BENCH_CONNS wrk connections (default 64),
#   BENCH_REQUESTS per replica per step (default 10000), BENCH_STREAMS per replica (default 1000),
#   BENCH_REPLICA_ROUNDS of the one- and two-replica rows (default 2, the best one reported),
#   MODELGO_BENCH_PG (default postgresql://postgres@127.0.0.1:5432), MODELGO_BENCH_REDIS
#   (default redis://127.0.0.1:6379/0), MODELGO_BIN (default .venv/bin/model-go), BENCH_KEEP=1 keeps
#   the work directory (server, wrk, hey and stream logs) instead of removing it
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HARNESS=${MODELGO_BENCH_HARNESS:-$ROOT/../shared/bench}
[ -f "$HARNESS/mock_upstream.py" ] || { echo "bench harness not found at $HARNESS" >&2; exit 2; }
BENCH_HOME=${BENCH_HOME:-$HOME/.cache/model-go-bench}
export BENCH_HOME
if [ ! -x "$BENCH_HOME/venv-bench/bin/python" ] || ! command -v wrk >/dev/null || ! command -v hey >/dev/null; then
  echo "installing the benchmark harness into $BENCH_HOME (wrk, hey, a venv; no LiteLLM or Portkey)"
  SKIP_LITELLM=1 SKIP_PORTKEY=1 bash "$HARNESS/setup.sh"
fi
PG_BASE=${MODELGO_BENCH_PG:-postgresql://postgres@127.0.0.1:5432}
REDIS_URL=${MODELGO_BENCH_REDIS:-redis://127.0.0.1:6379/0}
for tool in taskset psql redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench_replicas needs $tool" >&2; exit 2; }
done

if ! psql -q "$PG_BASE/postgres" -c 'SELECT 1' >/dev/null 2>&1 \
  || [ "$(redis-cli -u "$REDIS_URL" PING 2>/dev/null)" != PONG ]; then
  echo "replicas bench skipped: it needs PostgreSQL at $PG_BASE and Redis at $REDIS_URL" >&2
  exit 0
fi
MG=${MODELGO_BIN:-$ROOT/.venv/bin/model-go}
PY=$BENCH_HOME/venv-bench/bin/python
DURATION=${BENCH_DURATION:-6}
CONNS=${BENCH_CONNS:-64}
REQUESTS=${BENCH_REQUESTS:-10000}
STREAMS=${BENCH_STREAMS:-1000}
ROUNDS=${BENCH_REPLICA_ROUNDS:-2}
TAG=$(python3 -c 'import secrets; print(secrets.token_hex(5))')
DB_NAME=modelgo_bench_$TAG
REDIS_PREFIX=modelgo-bench-$TAG:
HZ=$(getconf CLK_TCK)
CHAT=/v1/chat/completions
WORK=$(mktemp -d -t model-go-bench-replicas.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

STARTED=()  # PIDs of the processes this script started and has not yet waited for, stopped at exit
forget() {  # PID: reaped, so no longer ours to signal (the number may be reused)
  local kept=() pid
  for pid in "${STARTED[@]}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
  STARTED=("${kept[@]}")
}
alive() {  # PID: running (an exited child not yet reaped is a zombie, which `kill -0` still finds)
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]
}
DB_CREATED=0
cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$DB_CREATED" = 1 ]; then
    psql -q "$PG_BASE/postgres" -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  redis-cli -u "$REDIS_URL" --scan --pattern "$REDIS_PREFIX*" 2>/dev/null \
    | head -n 1000000 | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null 2>&1 || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- measurement helpers ---------------------------------------------------------------------------
ticks() {  # utime+stime of the given PIDs, in clock ticks
  local total=0 pid
  for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$total"
}
service_snapshot() {  # "pid ticks" for every PostgreSQL and Redis server process
  local pid
  for pid in $(pgrep -u postgres || true) $(pgrep -x redis-server || true); do
    awk -v p="$pid" '{print p, $14 + $15}' "/proc/$pid/stat" 2>/dev/null || true
  done
}
service_ticks_since() {  # ticks used since the snapshot in $1 (processes started since count whole)
  service_snapshot >"$1.after"
  awk 'NR==FNR {b[$1]=$2; next} {d += $2 - (($1 in b) ? b[$1] : 0)} END {print d + 0}' "$1" "$1.after"
}
children_ticks() {  # CPU of this shell's reaped children (wrk), from the `times` builtin, in ticks
  times >"$WORK/times"  # not in a pipe or $(...): a subshell starts with no children's times
  awk -v hz="$HZ" 'NR==2 {
    for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } printf "%d", s * hz }' "$WORK/times"
}
all_busy() { awk '/^cpu[0-9]/ {b += $2+$3+$4+$7+$8+$9} END {print b}' /proc/stat; }
rss_mib() { awk '/^VmRSS:/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM:/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

wait_ready() {  # port pid log
  for _ in $(seq 1 600); do  # up to 60 s: a loaded machine starts slowly
    curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    alive "$2" || break
    sleep 0.1
  done
  echo "server on port $1 did not become ready:" >&2; tail -n 30 "$3" >&2; exit 1
}

# mg ENV_FILE ARGS...: the CLI against one database (ENV_FILE holds its MODELGO_* settings)
mg() { local envf=$1; shift; env $(cat "$envf") "$MG" "$@"; }
setup_database() {  # ENV_FILE -> prints the bench key
  mg "$1" user add bench --email bench@example.com >/dev/null
  mg "$1" credit add bench 1000000 >/dev/null
  mg "$1" price set mock-model --input 1 --output 2 >/dev/null
  mg "$1" channel add bench-mock --provider openai --base-url "http://127.0.0.1:$MOCK_PORT/v1" \
    --models mock-model --api-key-stdin <<<"sk-bench-upstream" >/dev/null 2>&1
  # limits far above anything this bench sends, so every request is counted (in this process on
  # SQLite, in Redis on the replicas) and none is refused; an unlimited key would skip the limiter
  mg "$1" key add bench --name bench --rpm 100000000 --tpm 1000000000 --max-concurrency 100000 2>/dev/null \
    | tail -n1
}
start_server() {  # NAME CORE ENV_FILE PORT -> sets SERVER_PID
  env $(cat "$3") MODELGO_PORT="$4" taskset -c "$2" "$MG" serve >"$WORK/$1.log" 2>&1 &
  SERVER_PID=$!
  STARTED+=("$SERVER_PID")
  wait_ready "$4" "$SERVER_PID" "$WORK/$1.log"
}
stop_server() {  # PID
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}

# hey_run N CONNS URL...: N requests on every URL at once (hey sends a multiple of CONNS: N is
# rounded down to one); adds the answers that were not 200 to BAD
hey_run() {
  local n=$(($1 / $2 * $2)) c=$2 url pids=() i ok
  shift 2
  for url in "$@"; do
    hey -n "$n" -c "$c" -t 30 -m POST -T application/json -H "Authorization: Bearer $KEY" \
      -d '{"model":"mock-model","max_tokens":150,"messages":[{"role":"user","content":"hi"}]}' \
      "$url" >"$WORK/hey.${#pids[@]}" 2>&1 &
    pids+=($!)
    STARTED+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || true
    forget "${pids[$i]}"
    ok=$(awk '/\[200\]/ {print $2}' "$WORK/hey.$i")
    BAD=$((BAD + n - ${ok:-0}))
  done
}

# throughput LABEL LOAD_NOTE WRK_CORES URL PID [URL PID]...: one closed-loop wrk per URL, the
# connections split evenly; appends one tab-separated result line to $WORK/rows
throughput() {
  local label=$1 load_note=$2 wrk_cores=$3
  shift 3
  local urls=() pids=() wrk_pids=() n i
  while [ $# -gt 0 ]; do urls+=("$1"); pids+=("$2"); shift 2; done
  n=${#urls[@]}
  for i in "${!urls[@]}"; do  # warm-up: 2 s, 16 connections, not measured
    API_KEY=$KEY taskset -c "$wrk_cores" wrk -t1 -c16 -d2s -s "$HARNESS/lib/post.lua" "${urls[$i]}" >/dev/null 2>&1
  done
  sleep 1
  # before and after: the servers', the mock's and wrk's (reaped children) CPU, the busy time of all
  # cores, PostgreSQL's and Redis's CPU; all in clock ticks
  local t0 server0 load0 busy0 svc="$WORK/svc.$label"
  children_ticks >"$WORK/children"
  server0=$(ticks "${pids[@]}")
  load0=$(($(ticks "$MOCK_PID") + $(cat "$WORK/children")))
  busy0=$(all_busy)
  service_snapshot >"$svc"
  t0=$(date +%s.%N)
  for i in "${!urls[@]}"; do
    API_KEY=$KEY taskset -c "$wrk_cores" wrk -t1 -c$((CONNS / n)) -d"${DURATION}s" --timeout 10s \
      -s "$HARNESS/lib/post.lua" "${urls[$i]}" >"$WORK/wrk.$label.$i" 2>&1 &
    wrk_pids+=($!)
    STARTED+=($!)
  done
  for i in "${!wrk_pids[@]}"; do wait "${wrk_pids[$i]}" || true; forget "${wrk_pids[$i]}"; done
  local t1 server1 load1 busy1 svc_ticks
  t1=$(date +%s.%N)
  svc_ticks=$(service_ticks_since "$svc")
  busy1=$(all_busy)
  children_ticks >"$WORK/children"
  server1=$(ticks "${pids[@]}")
  load1=$(($(ticks "$MOCK_PID") + $(cat "$WORK/children")))
  # sum over the wrk processes: requests, errors (connect/read/write/timeout/status), rps
  cat "$WORK"/wrk."$label".* | python3 -c '
import json, re, sys
label, note, n, hz, wall, server, load, busy, svc = sys.argv[1:]
rows = [json.loads(m.group(1)) for m in re.finditer(r"WRKJSON (\{.*\})", sys.stdin.read())]
if len(rows) != int(n):
    sys.exit(f"wrk produced no result for {label}")
req = sum(r["requests"] for r in rows)
err = sum(r[k] for r in rows for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status"))
rps = sum(r["rps"] for r in rows)
hz, wall = int(hz), float(wall)
server, load, busy, svc = (int(x) for x in (server, load, busy, svc))
others = max(busy - server - load - svc, 0)  # processes this script did not start (other users), kernel
cores = "/".join(f"{t / hz / wall:.2f}" for t in (server, load, svc, others))
us = lambda t: f"{t / hz * 1e6 / max(req, 1):.0f}"
print("\t".join([label, f"{rps:.0f}", us(server), us(svc), str(err), note, cores]))
' "$label" "$load_note" "$n" "$HZ" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
    $((server1 - server0)) $((load1 - load0)) \
    $((busy1 - busy0)) "$svc_ticks" >>"$WORK/rows"
  tail -n1 "$WORK/rows" | awk -F'\t' '{printf "  %-14s %6s req/s  %5s µs/req  errors %s  cores %s\n", $1, $2, $3, $5, $7}'
}

# -- the mock upstream: no latency; streams of 20 chunks 200 ms apart (4 s), so 1,000 are open at once
MOCK_PORT=$(free_port)
taskset -c 1 "$PY" "$HARNESS/mock_upstream.py" --port "$MOCK_PORT" --delay-ms 0 --stream-chunks 20 \
  --chunk-delay-ms 200 >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
STARTED+=("$MOCK_PID")
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$MOCK_PORT/health" && break; sleep 0.1; done
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "replicas bench: mock upstream pid $MOCK_PID on port $MOCK_PORT; load average $LOAD_START"
echo "  (each throughput row: req/s, gateway CPU µs/req, errors, cores: gateway/load/PG+Redis/others)"

# -- the thin baseline: the harness's gateway, usage rows batched into SQLite, core 0 ---------------
THIN_PORT=$(free_port)
(cd "$HARNESS/gateways" && THIN_UPSTREAM="http://127.0.0.1:$MOCK_PORT/v1" THIN_KEYS=sk-bench-1 THIN_CLIENT=aiohttp \
  THIN_LOG=sqlite THIN_DB="$WORK/thin_usage.db" exec taskset -c 0 "$BENCH_HOME/venv-bench/bin/uvicorn" \
  thin_gateway:app --host 127.0.0.1 --port "$THIN_PORT" --loop uvloop --http httptools --no-access-log \
  --log-level warning) >"$WORK/thin.log" 2>&1 &
THIN_PID=$!
STARTED+=("$THIN_PID")
for _ in $(seq 1 300); do
  curl -fs -o /dev/null -H 'Authorization: Bearer sk-bench-1' -H 'Content-Type: application/json' \
    -d '{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}' \
    "http://127.0.0.1:$THIN_PORT$CHAT" && break
  sleep 0.1
done
KEY=sk-bench-1 throughput thin "wrk+mock on core 1" 1 "http://127.0.0.1:$THIN_PORT$CHAT" "$THIN_PID"
stop_server "$THIN_PID"

# -- single node on SQLite, core 0 ------------------------------------------------------------------
COMMON="MODELGO_HOST=127.0.0.1 MODELGO_DEMO=false MODELGO_MAX_CONNECTIONS=4000"
COMMON="$COMMON MODELGO_DEFAULT_RPM=0 MODELGO_DEFAULT_TPM=0 MODELGO_DEFAULT_CONCURRENCY=0"
mkdir -m 700 "$WORK/sqlite" "$WORK/pg"
echo "$COMMON MODELGO_DATA_DIR=$WORK/sqlite" >"$WORK/sqlite.env"
KEY=$(setup_database "$WORK/sqlite.env")
PORT_S=$(free_port)
start_server sqlite 0 "$WORK/sqlite.env" "$PORT_S"
throughput sqlite "wrk+mock on core 1" 1 "http://127.0.0.1:$PORT_S$CHAT" "$SERVER_PID"
stop_server "$SERVER_PID"

# -- two replicas on one PostgreSQL database and one Redis -----------------------------------------
psql -q "$PG_BASE/postgres" -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null
DB_CREATED=1
PG_URL="postgresql+asyncpg://${PG_BASE#postgresql://}/$DB_NAME"
# the replicas share the data directory, and so the server secret
echo "$COMMON MODELGO_DATA_DIR=$WORK/pg MODELGO_DATABASE_URL=$PG_URL MODELGO_REDIS_URL=$REDIS_URL" \
  "MODELGO_REDIS_PREFIX=$REDIS_PREFIX" >"$WORK/pg.env"
KEY=$(setup_database "$WORK/pg.env")
PORT_A=$(free_port)
PORT_B=$(free_port)
start_server replica-a 0 "$WORK/pg.env" "$PORT_A"
PID_A=$SERVER_PID
start_server replica-b 1 "$WORK/pg.env" "$PORT_B"
PID_B=$SERVER_PID
HWM0_A=$(hwm_mib "$PID_A")  # the peak so far: start-up alone
HWM0_B=$(hwm_mib "$PID_B")
URL_A="http://127.0.0.1:$PORT_A$CHAT"
URL_B="http://127.0.0.1:$PORT_B$CHAT"
echo "replica A pid $PID_A on core 0, replica B pid $PID_B on core 1 (PostgreSQL $DB_NAME, Redis prefix $REDIS_PREFIX)"
taskset -a -pc 0,1 "$MOCK_PID" >/dev/null  # the memory steps load both replicas: let the mock float

# memory: each step runs on both replicas at once; VmRSS read 1 s after it (usage rows flushed)
declare -A MEM
mem_step() {  # NAME
  sleep 1
  MEM[$1.a]=$(rss_mib "$PID_A")
  MEM[$1.b]=$(rss_mib "$PID_B")
  echo "  $1: A ${MEM[$1.a]} MiB, B ${MEM[$1.b]} MiB"
}
BAD=0
hey_run 1000 16 "$URL_A" "$URL_B"
mem_step warm
hey_run "$REQUESTS" 50 "$URL_A" "$URL_B"
mem_step req1
"$PY" "$ROOT/scripts/bench_streams.py" --url "$URL_A" --pid "$PID_A" --url "$URL_B" --pid "$PID_B" \
  --key "$KEY" --per-target "$STREAMS" --timeout 90 >"$WORK/streams.out" 2>&1 &
STREAMS_PID=$!
STARTED+=("$STREAMS_PID")
wait "$STREAMS_PID" || true
forget "$STREAMS_PID"
STREAMJSON=$(sed -n 's/^STREAMJSON //p' "$WORK/streams.out")
[ -n "$STREAMJSON" ] || { echo "the stream client failed:" >&2; tail -n 20 "$WORK/streams.out" >&2; exit 1; }
mem_step streams
hey_run "$REQUESTS" 50 "$URL_A" "$URL_B"
mem_step req2

# throughput: A alone (wrk and the mock on core 1, B idle there) and both, in rounds that alternate
# the order (one, two, two, one, ...); the report keeps each setup's best round, since other users
# of a shared machine can only take throughput away
one_replica() {
  taskset -a -pc 1 "$MOCK_PID" >/dev/null
  throughput one-replica "wrk+mock on core 1" 1 "$URL_A" "$PID_A"
}
two_replicas() {
  taskset -a -pc 0,1 "$MOCK_PID" >/dev/null
  throughput two-replicas "2 wrk+mock unpinned (cores 0-1)" 0,1 "$URL_A" "$PID_A" "$URL_B" "$PID_B"
}
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then one_replica; two_replicas; else two_replicas; one_replica; fi
done
taskset -a -pc 0,1 "$MOCK_PID" >/dev/null
mem_step tput
HWM_A=$(hwm_mib "$PID_A")
HWM_B=$(hwm_mib "$PID_B")
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# -- the report --------------------------------------------------------------------------------------
echo
echo "## (vi) Replicas on PostgreSQL + Redis, same run ($(date -u '+%Y-%m-%d %H:%M UTC')," \
  "load average $LOAD_START at start, $LOAD_END at end)"
echo
python3 - "$WORK/rows" "$CONNS" "$DURATION" "$ROUNDS" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    label, rps, cpu, svc, err, load, cores = line.rstrip("\n").split("\t")
    if label not in rows or float(rps) > rows[label]["rps"]:  # the best of the rounds
        rows[label] = {"rps": float(rps), "cpu": int(cpu), "svc": svc, "err": err, "load": load, "cores": cores}
names = {
    "thin": "thin baseline (harness, SQLite usage log), core 0",
    "sqlite": "model-go single node, SQLite, core 0",
    "one-replica": "model-go 1 replica, PostgreSQL + Redis, core 0",
    "two-replicas": "model-go 2 replicas, PostgreSQL + Redis, cores 0 + 1",
}
thin, one, two = rows["thin"], rows["one-replica"], rows["two-replicas"]
print(f"wrk -t1, {sys.argv[2]} connections in all (split evenly over the replicas), {sys.argv[3]} s, closed loop, "
      f"the harness's lib/post.lua body; the replica rows are the best of {sys.argv[4]} alternating rounds. "
      "CPU from /proc (utime+stime); the last column splits the busy time of both cores: the gateway(s) / wrk + mock / "
      "PostgreSQL + Redis / everything else (other users of the machine).\n")
print("| configuration | req/s | × thin | × 1 replica | server CPU µs/req | PostgreSQL + Redis CPU µs/req | errors "
      "| load generator | cores: gateway / load / PG+Redis / others |")
print("|---|---:|---:|---:|---:|---:|---:|---|---|")
for label, name in names.items():
    r = rows[label]
    print(f"| {name} | {r['rps']:,.0f} | {r['rps'] / thin['rps']:.2f} | {r['rps'] / one['rps']:.2f} | {r['cpu']} "
          f"| {r['svc']} | {r['err']} | {r['load']} | {r['cores']} |")
ratio = two["rps"] / one["rps"]
print(f"\nTwo replicas on two cores: {ratio:.2f}× one replica (target ≥ 1.6×: {'met' if ratio >= 1.6 else 'NOT met'}). "
      f"CPU per request, two replicas against one: {two['cpu'] / one['cpu']:.2f}× (at the one-replica cost, two "
      f"replicas with a core each to themselves would serve {2e6 / one['cpu']:,.0f} req/s). One replica on "
      f"PostgreSQL + Redis: {one['rps'] / rows['sqlite']['rps']:.2f}× the SQLite single node's req/s, "
      f"{one['cpu'] / rows['sqlite']['cpu']:.2f}× its CPU per request.")
EOF
python3 - "$STREAMJSON" "$STREAMS" "$REQUESTS" "$BAD" \
  "${MEM[warm.a]}" "${MEM[req1.a]}" "${MEM[streams.a]}" "${MEM[req2.a]}" "${MEM[tput.a]}" "$HWM0_A / $HWM_A" \
  "${MEM[warm.b]}" "${MEM[req1.b]}" "${MEM[streams.b]}" "${MEM[req2.b]}" "${MEM[tput.b]}" "$HWM0_B / $HWM_B" <<'EOF'
import json, sys
streams = json.loads(sys.argv[1])["targets"]
n, reqs, bad = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"\nMemory per replica (VmRSS, MiB), each step on both replicas at once: {n:,} concurrent streams and "
      f"{reqs:,} requests per replica; non-200 answers in the request steps: {bad}.\n")
print(f"| replica | after 1,000-request warm-up | after {reqs:,} requests | peak during {n:,} streams | after the streams "
      f"| after {reqs:,} more | after the throughput runs | VmHWM after start-up / at the end "
      "| streams completed / failed / most open at once |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for i, name in enumerate(("A (core 0)", "B (core 1)")):
    warm, req1, after_streams, req2, tput, hwm = sys.argv[5 + 6 * i: 11 + 6 * i]
    s = streams[i]
    errors = "".join(f" ({k}: {v})" for k, v in s["errors"].items())
    print(f"| {name} | {warm} | {req1} | {s['rss_peak_mib']:.0f} | {after_streams} | {req2} | {tput} | {hwm} "
          f"| {s['ok']} / {s['failed']}{errors} / {s['peak_open']} |")
EOF
echo
echo "Warnings and errors in the replicas' logs during the run (count × message; the SMTP notice left out):"
python3 - "$WORK/replica-a.log" "$WORK/replica-b.log" <<'EOF'
import collections, json, sys
seen = collections.Counter()
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("WARNING", "ERROR", "CRITICAL") and "SMTP" not in entry.get("msg", ""):
            seen[f"{entry['level']} {entry.get('logger')}: {entry.get('msg', '')[:160]}"] += 1
for message, count in seen.most_common(8):
    print(f"- {count} × {message}")
if not seen:
    print("- none")
EOF
health() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/healthz"; }
echo "replica health after the run: A HTTP $(health "$PORT_A"), B HTTP $(health "$PORT_B")"
