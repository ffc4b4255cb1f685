#!/usr/bin/env bash
# Start, stop or show a three-node shoal cluster on this machine, loopback
# only: node-a, node-b, node-c serve HTTP on 127.0.0.1:8081-8083, admin on
# 127.0.0.1:9181-9183, gossip on 127.0.0.1:7946-7948 (change the bases
# with HTTP_BASE, ADMIN_BASE, GOSSIP_BASE). Logs and pid files go to
# .shoal/run/ beside this script.
#
#   cluster.sh start | stop | status | restart
#
# Uses $SHOAL, else shoal on PATH, else builds it from this repository.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
run="$here/.shoal/run"
HTTP_BASE=${HTTP_BASE:-8081}
ADMIN_BASE=${ADMIN_BASE:-9181}
GOSSIP_BASE=${GOSSIP_BASE:-7946}
nodes=(a b c)

find_shoal() {
  if [ -n "${SHOAL:-}" ]; then return; fi
  if command -v shoal >/dev/null 2>&1; then SHOAL=$(command -v shoal); return; fi
  echo "building shoal into $here/.shoal/shoal"
  mkdir -p "$here/.shoal"
  (cd "$here/../.." && go build -o "$here/.shoal/shoal" ./cmd/shoal)
  SHOAL="$here/.shoal/shoal"
}

alive() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

# wait_port waits until something listens on 127.0.0.1:$1 (bash's
# /dev/tcp, so no curl is needed), for at most 15 s.
wait_port() {
  for _ in $(seq 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1 after 15 s" >&2
  return 1
}

start() {
  find_shoal
  mkdir -p "$run"
  for i in 0 1 2; do
    n=${nodes[$i]}
    if alive "$n"; then echo "node-$n already runs (pid $(cat "$run/$n.pid"))"; continue; fi
    args=(-config "$here/config.toml" -name "node-$n"
      -http "127.0.0.1:$((HTTP_BASE + i))" -admin "127.0.0.1:$((ADMIN_BASE + i))"
      -gossip "127.0.0.1:$((GOSSIP_BASE + i))")
    if [ "$i" -gt 0 ]; then args+=(-join "127.0.0.1:$GOSSIP_BASE"); fi
    (cd "$here" && exec "$SHOAL" "${args[@]}") >"$run/$n.log" 2>&1 &
    echo $! >"$run/$n.pid"
    # The first node makes the cluster secret the others read: wait for it.
    wait_port $((ADMIN_BASE + i))
    echo "node-$n: http://127.0.0.1:$((HTTP_BASE + i))/  admin http://127.0.0.1:$((ADMIN_BASE + i))/  log $run/$n.log"
  done
}

stop() {
  for n in "${nodes[@]}"; do
    if alive "$n"; then kill -TERM "$(cat "$run/$n.pid")"; fi
  done
  for n in "${nodes[@]}"; do
    # drain_delay + shutdown_grace (config.toml) is 11 s at most.
    for _ in $(seq 150); do alive "$n" || break; sleep 0.1; done
    if alive "$n"; then echo "node-$n did not stop; killing it" >&2; kill -KILL "$(cat "$run/$n.pid")"; fi
    rm -f "$run/$n.pid"
  done
  echo "stopped"
}

status() {
  find_shoal
  "$SHOAL" members -admin "127.0.0.1:$ADMIN_BASE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  restart) stop; start ;;
  *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
