#!/usr/bin/env bash
# Server CPU per enrolling / per coming-online agent, real fleet-server on
# 127.0.0.1 of a private network namespace (the setup of sim/src/conform/real.rs).
#
# usage: measure.sh N CONC REPEATS [LOGS=1]
#   N        agents per phase
#   CONC     agents run at once (1 = sequential)
#   LOGS     1: server writes --frame-log/--event-log like conform; 0: no logs
# CPU is read from cgroup-v1 cpuacct.usage (ns, all threads incl. exited ones);
# server in one cgroup, all agent processes in another. Needs root, `ip`,
# cgroup v1's cpuacct and the release binaries (cargo build --release).
# What it gave on a 2-core CI machine: docs/observation.md, "The network"
# (the costs of `[server] cpu`).
set -u
N=${1:-50}; CONC=${2:-1}; REPEATS=${3:-3}; LOGS=${4:-1}
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
TAG=cpum-$$
ROOT=${OUT:-/tmp/server-cpu}/$TAG-n$N-c$CONC-l$LOGS
CG=/sys/fs/cgroup/cpuacct
NS=$TAG
IDLE_S=${IDLE_S:-10}
mkdir -p "$ROOT"
SRV_PID=
cleanup() {
  [ -n "${SRV_PID}" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
  for p in $(cat "$CG/$TAG-agt/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  sleep 0.3
  rmdir "$CG/$TAG-srv" "$CG/$TAG-agt" 2>/dev/null
  ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"; ip netns exec "$NS" ip link set lo up
mkdir "$CG/$TAG-srv" "$CG/$TAG-agt"
cpu() { cat "$CG/$TAG-$1/cpuacct.usage"; }            # ns
now() { date +%s%N; }
ms() { awk -v a="$1" 'BEGIN{printf "%.3f", a/1e6}'; }

# one agent command, run inside the agent cgroup and the namespace
export BIN NS CG TAG
agent() { # dir name behavior args...
  local d=$1 name=$2 beh=$3; shift 3
  sh -c 'echo $$ > "$CG/$TAG-agt/cgroup.procs"; exec "$@"' sh \
    ip netns exec "$NS" "$BIN/fleet-agent" --data "$d/agent-$name" --ca "$d/srv/ca.pem" \
    --name "$name" --behavior "$beh" --frame-log "$d/agent-$name.frames.jsonl" "$@"
}
export -f agent

start_server() { # dir
  local d=$1 logargs=()
  mkdir -p "$d/srv"
  [ "$LOGS" = 1 ] && logargs=(--frame-log "$d/srv/frames.jsonl" --event-log "$d/srv/events.jsonl")
  RUST_LOG=warn sh -c 'echo $$ > "$0/cgroup.procs"; exec "$@"' "$CG/$TAG-srv" \
    ip netns exec "$NS" "$BIN/fleet-server" --data "$d/srv" --hostname localhost \
    --token enroll-token --enroll-rate 0 --max-conns-per-source 0 --behavior fixed \
    --admin-token conform-admin-token "${logargs[@]}" 2>"$d/server.err" &
  SRV_PID=$!
  for _ in $(seq 150); do grep -q "enrollment on TCP" "$d/server.err" && return 0; sleep 0.1; done
  echo "server did not start: $(cat "$d/server.err")" >&2; exit 1
}

# phase NAME CMD...: runs CMD, prints server/agent CPU deltas (baseline-corrected)
phase() {
  local name=$1; shift
  local s0 a0 t0 s1 a1 t1
  s0=$(cpu srv); a0=$(cpu agt); t0=$(now)
  "$@"
  s1=$(cpu srv); a1=$(cpu agt); t1=$(now)
  local wall=$((t1 - t0)) ds=$((s1 - s0)) da=$((a1 - a0))
  local base=$(awk -v r="$IDLE_RATE" -v w="$wall" 'BEGIN{printf "%d", r*w}')
  echo "$REP $name N=$N conc=$CONC wall_ms=$(ms $wall) srv_ms=$(ms $ds) idle_ms=$(ms $base)" \
       "srv_per_agent_ms=$(ms $(( (ds - base) / N ))) agent_per_agent_ms=$(ms $((da / N)))" | tee -a "$ROOT/results.txt"
}

enroll_all() { # dir prefix behavior
  seq 1 "$N" | xargs -P "$CONC" -I{} bash -c \
    'agent "$0" "$1-{}" "$2" up --token enroll-token >/dev/null 2>"$0/$1-{}.up.err" || echo "FAIL $1-{}" >&2' "$1" "$2" "$3"
}

online_all() { # dir prefix : start `run` for every enrolled agent, wait until all are online
  local d=$1 p=$2 i
  for i in $(seq 1 "$N"); do
    RUST_LOG=warn,fleet::event=info agent "$d" "$p-$i" fixed --liveness-port $((20000 + i)) run \
      >/dev/null 2>"$d/$p-$i.run.err" &
    if [ "$CONC" = 1 ]; then
      for _ in $(seq 300); do
        grep -q "channel.connected" "$d/$p-$i.run.err" && grep -q "tunnel.connected" "$d/$p-$i.run.err" && break
        sleep 0.02; done
    fi
  done
  for _ in $(seq 600); do
    local c=$(grep -l "channel.connected" "$d/$p"-*.run.err 2>/dev/null | xargs -r grep -l "tunnel.connected" | wc -l)
    [ "$c" -ge "$N" ] && break; sleep 0.1
  done
  echo "online: $c/$N" >&2
}
hold() { sleep "$1"; }

for REP in $(seq 1 "$REPEATS"); do
  D=$ROOT/rep$REP; mkdir -p "$D"
  start_server "$D"
  sleep 2
  # idle baseline
  s0=$(cpu srv); t0=$(now); sleep "$IDLE_S"; s1=$(cpu srv); t1=$(now)
  IDLE_RATE=$(awk -v a=$((s1 - s0)) -v w=$((t1 - t0)) 'BEGIN{print a/w}')
  echo "$REP idle srv_ms_per_s=$(awk -v r="$IDLE_RATE" 'BEGIN{printf "%.4f", r*1e3}')" | tee -a "$ROOT/results.txt"
  phase enroll-only  enroll_all "$D" e legacy     # HTTPS enrollment, no tunnel probe
  phase enroll+probe enroll_all "$D" p fixed      # enrollment + QUIC probe handshake (+drain)
  phase online       online_all "$D" p            # run: WS channel + QUIC tunnel + first check-in
  # steady state with N agents online
  s0=$(cpu srv); t0=$(now); sleep 10; s1=$(cpu srv); t1=$(now)
  echo "$REP online-steady srv_ms_per_s=$(awk -v a=$((s1 - s0)) -v w=$((t1 - t0)) 'BEGIN{printf "%.4f", a/w*1e3}')" | tee -a "$ROOT/results.txt"
  for p in $(cat "$CG/$TAG-agt/cgroup.procs"); do kill "$p" 2>/dev/null; done
  sleep 1
  grep -c FAIL "$D"/*.up.err 2>/dev/null | grep -v ':0' | head -3
  kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null; SRV_PID=
  rm -rf "$D"/agent-*/ 2>/dev/null
done
echo "results: $ROOT/results.txt"
