#!/usr/bin/env bash
# Cluster benchmarks (not a test): run from the repository root.
#
#  1. Scale-out: CGI-bound work (a script that sleeps 50 ms; max_concurrent
#     and capacity 4 per node), all traffic sent to node a, with 1, 2 and 3
#     nodes. Bar: 3 nodes give at least 2.7x one node.
#  2. Proxy-hop cost: a small static file served by node b directly, through
#     node a (the affinity cookie pins every request to b), and through
#     nginx, HAProxy and Caddy in front of b.
#
# Needs wrk; nginx, haproxy and caddy are used when installed.
# Usage: bench/cluster-scale.sh [seconds-per-run]
set -euo pipefail
DUR=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is required" >&2; exit 2; }
(cd "$ROOT" && go build -o "$TMP/shoal" ./cmd/shoal)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# rps URL CONNS [HEADER]: successful (2xx/3xx) requests per second.
rps() {
  wrk -t2 -c"$2" -d"${DUR}s" ${3:+-H "$3"} "$1" | awk -v d="$DUR" '
    / requests in / { total = $1 }
    /Non-2xx or 3xx responses:/ { bad = $5 }
    END { printf "%d%s", (total - bad) / d, (bad > 0 ? " (+" bad " errors)" : "") }'
}

mkdir -p "$TMP/site/www" "$TMP/site/cgi-bin"
echo "hello from shoal" > "$TMP/site/www/small.txt"
printf '#!/bin/sh\nsleep 0.05\nprintf "Content-Type: text/plain\\r\\n\\r\\n%%s\\n" "$SHOAL_NODE"\n' > "$TMP/site/cgi-bin/work.sh"
chmod +x "$TMP/site/cgi-bin/work.sh"
cat > "$TMP/site/config.toml" <<TOML
[server]
drain_delay = "0s"
[log]
access = "off"
level = "warn"
[[site]]
root = "www"
[[site.cgi]]
prefix = "/cgi-bin/"
dir = "cgi-bin"
max_concurrent = 4
[cluster]
capacity = 4
balance = "all"
TOML
export SHOAL_SECRET=$("$TMP/shoal" keygen)

declare -A HTTP GOSSIP
start_node() { # name [join] [extra flags...]
  local name=$1 join=${2:-}; shift 2 || shift 1
  HTTP[$name]=127.0.0.1:$(port); GOSSIP[$name]=127.0.0.1:$(port)
  (cd "$TMP/site" && exec "$TMP/shoal" -name "$name" -http "${HTTP[$name]}" -admin "" \
     -gossip "${GOSSIP[$name]}" ${join:+-join "$join"} "$@" >"$TMP/$name.log" 2>&1) &
  PIDS+=($!)
  for _ in $(seq 100); do curl -s -o /dev/null "http://${HTTP[$name]}/small.txt" && return; sleep 0.1; done
  echo "node $name did not start:" >&2; cat "$TMP/$name.log" >&2; exit 1
}
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }

echo "== scale-out: CGI work (50 ms, 4 per node), all traffic to a, ${DUR}s each"
declare -A R
for n in 1 2 3; do
  start_node a
  [ "$n" -ge 2 ] && start_node b "${GOSSIP[a]}"
  [ "$n" -ge 3 ] && start_node c "${GOSSIP[a]}"
  sleep 1 # let the nodes exchange their first load reports
  R[$n]=$(rps "http://${HTTP[a]}/cgi-bin/work.sh" 12)
  echo "$n node(s): ${R[$n]} req/s"
  stop_all
done
awk -v a="${R[1]%% *}" -v c="${R[3]%% *}" 'BEGIN { r = c / a; printf "3 nodes / 1 node = %.2fx (bar 2.7x): %s\n", r, (r >= 2.7 ? "PASS" : "FAIL") }'

echo "== proxy hop: small static file, ${DUR}s each, 32 connections"
# round_robin hands fresh clients affinity cookies; keep one naming b
# (base64url of "b" is "Yg"), so every request to a is proxied to b.
sed -i 's/^balance = "all"/balance = "all"\npolicy = "round_robin"\nsticky = true/' "$TMP/site/config.toml"
start_node b
start_node a "${GOSSIP[b]}"
sleep 1
COOKIE=""
for _ in $(seq 20); do
  COOKIE=$(curl -s -D - -o /dev/null "http://${HTTP[a]}/small.txt" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(shoal_node=Yg\.[^;]*\).*/\1/p')
  [ -n "$COOKIE" ] && break
done
[ -n "$COOKIE" ] || { echo "no affinity cookie for b" >&2; exit 1; }
echo "direct to b:        $(rps "http://${HTTP[b]}/small.txt" 32) req/s"
echo "shoal a -> b:       $(rps "http://${HTTP[a]}/small.txt" 32 "Cookie: $COOKIE") req/s"
B=${HTTP[b]}
if command -v nginx >/dev/null; then
  NP=$(port); mkdir -p "$TMP/nginx"
  cat > "$TMP/nginx/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $TMP/nginx/pid; error_log stderr error;
events { worker_connections 1024; }
http { access_log off;
  upstream b { server $B; keepalive 64; }
  server { listen 127.0.0.1:$NP;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX
  nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" & PIDS+=($!); sleep 0.5
  echo "nginx -> b:         $(rps "http://127.0.0.1:$NP/small.txt" 32) req/s"
fi
if command -v haproxy >/dev/null; then
  HP=$(port)
  printf 'global\n  maxconn 2000\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  http-reuse always\nfrontend f\n  bind 127.0.0.1:%s\n  default_backend b\nbackend b\n  server b1 %s\n' "$HP" "$B" > "$TMP/haproxy.cfg"
  haproxy -f "$TMP/haproxy.cfg" -db >/dev/null 2>&1 & PIDS+=($!); sleep 0.5
  echo "haproxy -> b:       $(rps "http://127.0.0.1:$HP/small.txt" 32) req/s"
fi
if command -v caddy >/dev/null; then
  CP=$(port)
  printf '{\n  admin off\n}\nhttp://127.0.0.1:%s {\n  reverse_proxy %s\n}\n' "$CP" "$B" > "$TMP/Caddyfile"
  caddy run --config "$TMP/Caddyfile" --adapter caddyfile >/dev/null 2>&1 & PIDS+=($!); sleep 1
  echo "caddy -> b:         $(rps "http://127.0.0.1:$CP/small.txt" 32) req/s"
fi
