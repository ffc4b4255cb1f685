#!/usr/bin/env bash
# bench/run.sh: shoal against nginx, Caddy, Apache (mod_cgid), lighttpd
# (mod_cgi), HAProxy and nginx in front of php-fpm, in one run, on this
# machine.
#
# Usage (from anywhere in the repository):
#
#   bench/run.sh                      # every section
#   bench/run.sh static               # one or more of: static page cgi tls proxy scale
#                                     # routes upstream fastcgi tlsnew
#   ROUNDS=5 DURATION=5 bench/run.sh static cgi
#   SHOAL=/path/to/shoal bench/run.sh # use a built binary instead of `go build`
#
# Needs (Debian 12):
#
#   apt-get install nginx-light caddy wrk apache2 lighttpd haproxy nghttp2-client curl openssl php8.2-fpm
#
# plus Go to build shoal (and tlsnew, bench/tlsnew). A missing tool is reported by name and the servers
# that need it are left out; the run goes on with the rest.
#
# What it does: makes one temporary folder (removed on exit, with every
# process the script started) holding the files all servers serve (1 KiB,
# 16 KiB, 256 KiB and 10 MiB of random bytes, and 1 KiB as assets/1k.bin),
# a hello-world sh CGI script, hello.php, a self-signed ECDSA P-256 certificate and each server's config, pid file and logs.
# Every server listens on 127.0.0.1 on ports found free at start, has its
# access log off, and runs pinned to CPU $SERVER_CPU with taskset; the load
# generator (wrk, h2load for HTTP/2, tlsnew for new TLS connections) is
# pinned to CPU $CLIENT_CPU. For each
# case the servers take turns, ROUNDS times, DURATION seconds each, so a
# disturbance from the other work on the machine hits them all alike. The
# whole run stops starting new measurements after BUDGET seconds.
#
# How to read the output: one table per section. Each row is a median over
# the rounds:
#   req/s     successful responses per second (non-2xx are counted apart in
#             the "bad" column and never as throughput)
#   p99 ms    99th percentile latency reported by wrk or tlsnew ("-" for
#             h2load, which reports no percentiles)
#   CPU       server CPU time per request in microseconds: the utime+stime
#             (and the children's, for CGI) of every process of the server,
#             read from /proc/<pid>/stat before and after the run, divided by
#             the requests served. For the 10 MiB file it is milliseconds of
#             server CPU per GiB sent instead. CPU per request is steadier
#             than req/s on a shared machine: trust it more.
#   srv, cli  CPU use of the server (% of its one core) and of the load
#             generator's core (all processes on it, /proc/stat). cli near
#             100% with srv below it: the client was the limit, and req/s
#             says little about the server.
# Under each case, ratios of the shoal row to each other server:
#   req/s x   shoal req/s / other req/s (above 1: shoal serves more)
#   CPU x     shoal CPU / other CPU     (below 1: shoal spends less)
# and, where an issue sets a bar, the bar and "ok" or "MISS".
# A shoal feature that is not in this build prints
#   shoal: not available (reason)
# and the section goes on with the other servers.
#
# Sections:
#   static  GET of 1k/16k/256k/10m files, HTTP/1.1 keep-alive: shoal, nginx, Caddy
#   page    a shoal template page vs the same bytes as a static file (shoal),
#           nginx serving the static copy for reference
#   cgi     hello-world sh CGI: shoal, Apache mod_cgid, lighttpd mod_cgi
#   tls     HTTPS/1.1 1 KiB keep-alive (wrk), HTTP/2 1 KiB (h2load -c 32 -m 10):
#           shoal, nginx, Caddy
#   proxy   a reverse proxy in front of one origin (a shoal node, or nginx
#           when shoal is not built): shoal node -> shoal node, nginx
#           proxy_pass, HAProxy, Caddy reverse_proxy; the origin runs on the
#           server CPU too and its CPU per request is shown as an info row;
#           both shoal nodes serve one folder, share the secret and use
#           cluster.peer_tls as PEER_TLS says (default: shoal's, true)
#   scale   CGI work limited by max_concurrent (a script that sleeps), all
#           traffic sent to one node at a fixed offered rate (h2load --h1
#           --rps, not closed-loop: a full node's 503s must not become a
#           retry flood), clusters of 1, 2 and 3 shoal nodes
#   routes  /assets/1k.bin, HTTP/1.1 keep-alive, on a site with the ten
#           routes of bench/routes.toml (one headers route matches the file)
#           vs nginx with the equivalent locations (nginx-apps.conf.in); the
#           same file from shoal and nginx without routes, for the delta
#   upstream  1 KiB through shoal's [[upstream]] (route upstream = "app")
#           vs nginx proxy_pass (upstream {} keepalive 64, HTTP/1.1), both in
#           front of one backend (nginx serving the file on its own port, or
#           a shoal node without nginx) on the server CPU
#   fastcgi hello.php through one php-fpm pool (pm static, FPM_CHILDREN
#           workers, on the server CPU) both servers share: shoal's fastcgi
#           upstream vs nginx fastcgi_pass with fastcgi_keep_conn and an
#           upstream keepalive pool
#   tlsnew  new TLS 1.3 connections per second, one GET of 1 KiB each
#           (Connection: close), ECDSA P-256, X25519, no session resumption:
#           bench/tlsnew (built by the script) with TLSNEW_CONNS workers;
#           shoal, nginx, Caddy
#
# Knobs (environment): ROUNDS=3 DURATION=3 WARMUP=1 CONNS=32 BIG_CONNS=8
# CGI_CONNS=8 H2_CONNS=32 H2_STREAMS=10 BUDGET=1200 SERVER_CPU=0 CLIENT_CPU=1
# SCALE_MAXC=4 SCALE_SLEEP=0.1 SCALE_CONNS=32 SCALE_RATE=180 (req/s offered,
# default 1.5 x what three nodes can do) FPM_CONNS=8 (wrk connections in
# fastcgi) FPM_CHILDREN=16 (php-fpm workers, default 2 x FPM_CONNS: a kept
# FastCGI connection holds a worker even while idle, and both proxies keep
# theirs) TLSNEW_CONNS=16 PEER_TLS= (cluster.peer_tls of the proxy and
# scale nodes; empty: shoal's default, true) SHOAL=<binary> KEEP=1 (keep
# the temporary folder for a look at the logs).

set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-32}
BIG_CONNS=${BIG_CONNS:-8}
CGI_CONNS=${CGI_CONNS:-8}
H2_CONNS=${H2_CONNS:-32}
H2_STREAMS=${H2_STREAMS:-10}
BUDGET=${BUDGET:-1200}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SCALE_MAXC=${SCALE_MAXC:-4}
SCALE_SLEEP=${SCALE_SLEEP:-0.1}
SCALE_CONNS=${SCALE_CONNS:-32}
# Offered load: 1.5 times what three nodes can serve.
SCALE_RATE=${SCALE_RATE:-$(awk -v m="$SCALE_MAXC" -v s="$SCALE_SLEEP" 'BEGIN { printf "%d", 1.5 * 3 * m / s }')}
FPM_CONNS=${FPM_CONNS:-8}
FPM_CHILDREN=${FPM_CHILDREN:-$((2 * FPM_CONNS))}
TLSNEW_CONNS=${TLSNEW_CONNS:-16}
PEER_TLS=${PEER_TLS:-}
KEEP=${KEEP:-}

all_sections=(static page cgi tls proxy scale routes upstream fastcgi tlsnew)

# ---------------------------------------------------------------- helpers

note() { printf '# %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 2; }

declare -A missing_tool=()

# have TOOL PACKAGE: true when TOOL is on PATH (or in /usr/sbin); else says
# once which package brings it.
have() {
	if command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; then
		return 0
	fi
	if [[ -z ${missing_tool[$1]:-} ]]; then
		missing_tool[$1]=1
		printf 'missing: %s (apt-get install %s)\n' "$1" "$2"
	fi
	return 1
}

tool() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }

declare -A used_port=()

# free_port VAR: a TCP/UDP port on 127.0.0.1 nobody uses now (probed with
# ss), below the ephemeral range so wrk's own connections cannot take it.
free_port() {
	local _fp _i
	for ((_i = 0; _i < 500; _i++)); do
		_fp=$((20000 + RANDOM % 12000))
		[[ -n ${used_port[$_fp]:-} ]] && continue
		if ss -Htan "( sport = :$_fp )" 2>/dev/null | grep -q . ||
			ss -Huan "( sport = :$_fp )" 2>/dev/null | grep -q .; then
			continue
		fi
		used_port[$_fp]=1
		printf -v "$1" '%s' "$_fp"
		return 0
	done
	die "no free port found"
}

# render TEMPLATE OUT KEY=VALUE...: fills @KEY@ placeholders.
render() {
	local in=$1 out=$2 kv args=()
	shift 2
	for kv in "$@"; do
		args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
	done
	sed "${args[@]}" "$in" >"$out"
	if grep -q '@[A-Z_]*@' "$out"; then
		die "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | head -1)"
	fi
}

declare -A spid=()   # server name -> pid (also its session and process group id)
declare -A sstart=() # server name -> the pid's start time, so a reused pid is never killed

# start NAME CPU CMD...: runs CMD in its own session pinned to CPU; its
# output goes to $tmp/NAME/out.log.
start() {
	local name=$1 cpu=$2
	shift 2
	mkdir -p "$tmp/$name"
	setsid taskset -c "$cpu" "$@" >"$tmp/$name/out.log" 2>&1 </dev/null &
	spid[$name]=$!
	sstart[$name]=$(start_time $!)
}

start_time() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# session_pids SID: every live process in session SID (the server and
# everything it forked, CGI scripts included).
session_pids() {
	cat /proc/[0-9]*/stat 2>/dev/null |
		awk -v sid="$1" '{ pid = $1; sub(/^.*\) /, ""); if ($4 == sid) print pid }'
}

# kill_session SID START: SIGTERM, then SIGKILL after 3 s, to every process
# of the session this script started as SID at START.
kill_session() {
	local sid=$1 start=$2 i p
	if [[ $(start_time "$sid") == "$start" ]]; then
		kill -TERM -- "-$sid" 2>/dev/null
	fi
	for p in $(session_pids "$sid"); do kill -TERM "$p" 2>/dev/null; done
	for ((i = 0; i < 30; i++)); do
		[[ -z $(session_pids "$sid") ]] && return 0
		sleep 0.1
	done
	for p in $(session_pids "$sid"); do kill -KILL "$p" 2>/dev/null; done
	return 0
}

stop() {
	local name
	for name in "$@"; do
		[[ -n ${spid[$name]:-} ]] || continue
		kill_session "${spid[$name]}" "${sstart[$name]}"
		wait "${spid[$name]}" 2>/dev/null
		unset "spid[$name]" "sstart[$name]"
	done
}

stop_all() { stop "${!spid[@]}"; }

cleanup() {
	stop_all
	wait 2>/dev/null
	if [[ -n ${tmp:-} && -d $tmp ]]; then
		if [[ -n $KEEP ]]; then note "kept $tmp"; else rm -rf "$tmp"; fi
	fi
}

alive() { [[ -n ${spid[$1]:-} ]] && kill -0 "${spid[$1]}" 2>/dev/null; }

# wait_http NAME URL: true once URL answers any HTTP status (within 20 s)
# while NAME is still running.
wait_http() {
	local name=$1 url=$2 i code
	for ((i = 0; i < 200; i++)); do
		if ! alive "$name"; then
			return 1
		fi
		code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$url" 2>/dev/null)
		[[ $code != 000 && -n $code ]] && return 0
		sleep 0.1
	done
	return 1
}

# why_down NAME: the last useful line of a server's output, for a message.
why_down() {
	local f line
	for f in "$tmp/$1/out.log" "$tmp/$1/error.log"; do
		[[ -s $f ]] || continue
		line=$(grep -v '^\s*$' "$f" | tail -1)
		[[ -n $line ]] && { printf '%s' "${line:0:200}"; return; }
	done
	printf 'no output'
}

# expect_200 URL [WANT]: true when URL answers 200 (and the body contains
# WANT, when given); else sets $reason.
expect_200() {
	local url=$1 want=${2:-} code
	code=$(curl -sk --max-time 5 -o "$tmp/probe.body" -w '%{http_code}' "$url" 2>/dev/null)
	if [[ $code == 000 ]]; then
		reason="GET ${url} got no answer (nothing listening, or no TLS there)"
		return 1
	fi
	if [[ $code != 200 ]]; then
		reason="GET /${url#*//*/} answered $code"
		return 1
	fi
	if [[ -n $want ]] && ! grep -qF -- "$want" "$tmp/probe.body"; then
		reason="GET /${url#*//*/} answered 200 without \"$want\""
		return 1
	fi
	return 0
}

clk_tck=$(getconf CLK_TCK)

# cpu_ticks SID...: user+system CPU ticks of every live process in the
# given sessions. Reaped children (CGI scripts) are left out on purpose:
# Apache's mod_cgid ignores SIGCHLD, so the kernel drops its scripts' times,
# and counting them for the others only would be unfair.
cpu_ticks() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v sids=" $* " '
		{ sub(/^.*\) /, ""); if (index(sids, " " $4 " ")) t += $12 + $13 }
		END { printf "%d\n", t }'
}

# cpu_line CPU: "busy total" ticks of one CPU from /proc/stat.
cpu_line() {
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# ------------------------------------------------------------ measurement

results=""  # file, set once $tmp exists
round=0

over_budget() { ((SECONDS >= BUDGET)); }

# wrk_run URL CONNS SECS: prints "reqs bad secs p99ms".
wrk_run() {
	timeout $(($3 + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$2" -d"$3"s --timeout 10s --latency "$1" 2>&1 |
		awk '
		function ms(v) {
			if (v ~ /us$/) return v / 1000
			if (v ~ /ms$/) return v + 0
			if (v ~ /m$/) return v * 60000
			if (v ~ /s$/) return v * 1000
			return v
		}
		/requests in/ { d = $4; sub(/,$/, "", d); reqs = $1; secs = ms(d) / 1000 }
		/Non-2xx or 3xx responses:/ { bad += $NF }
		/Socket errors:/ { gsub(/,/, ""); bad += $4 + $6 + $8 + $10 }
		$1 == "99%" { p99 = ms($2) }
		END { if (reqs == "") reqs = 0; printf "%d %d %.3f %s\n", reqs, bad, secs, (p99 == "" ? "-" : p99) }'
}

# h2_run URL CONNS SECS: HTTP/2 over TLS with h2load; prints "reqs bad secs -".
h2_run() {
	timeout $(($3 + 30)) taskset -c "$CLIENT_CPU" h2load -t1 -c"$2" -m"$H2_STREAMS" -D"$3" "$1" 2>&1 |
		awk '
		/^finished in/ { s = $3; sub(/,$/, "", s); secs = (s ~ /ms$/) ? s / 1000 : s + 0 }
		/^requests:/ { done = $6; ok = $8 } # "succeeded" leaves out 4xx and 5xx
		END { printf "%d %d %.3f -\n", done, done - ok, secs }'
}

# rate_run URL CONNS SECS: HTTP/1.1 at a fixed offered rate (SCALE_RATE
# req/s over CONNS clients, one request in flight each) with h2load, so
# 503s from a full node do not turn into a flood of instant retries the way
# a closed-loop wrk run would; prints "reqs bad secs -".
rate_run() {
	local rps=$(((SCALE_RATE + $2 - 1) / $2))
	timeout $(($3 + 30)) taskset -c "$CLIENT_CPU" h2load --h1 -t1 -c"$2" -m1 --rps="$rps" -D"$3" "$1" 2>&1 |
		awk '
		/^finished in/ { s = $3; sub(/,$/, "", s); secs = (s ~ /ms$/) ? s / 1000 : s + 0 }
		/^requests:/ { done = $6; ok = $8 } # "succeeded" leaves out 4xx and 5xx
		END { printf "%d %d %.3f -\n", done, done - ok, secs }'
}

# tlsnew_run URL CONNS SECS: a new TLS 1.3 connection per request with
# bench/tlsnew (build_tlsnew first); prints "reqs bad secs p99ms".
tlsnew_run() {
	timeout $(($3 + 30)) taskset -c "$CLIENT_CPU" env GOMAXPROCS=1 "$tlsnew_bin" -url "$1" -c "$2" -d "$3s" 2>/dev/null |
		awk 'NF == 4 { line = $0 } END { print (line == "" ? "0 0 0.000 -" : line) }'
}

# measure SECTION CASE SERVER ROLE KIND URL CONNS SIZE SID...: one run of the
# load generator against URL, CPU of the given sessions around it, a line
# appended to $results. ROLE is subject (shoal), ref (compared with), both
# (a shoal baseline: compared with the refs, and the subjects with it) or
# info (printed, no ratio). With INFO_SIDS set, that set's CPU per request
# is appended as an info row named INFO_NAME too.
measure() {
	local section=$1 case=$2 server=$3 role=$4 kind=$5 url=$6 conns=$7 size=$8
	shift 8
	local before after ibefore=0 iafter=0 out reqs bad secs p99 cb0 ct0 cb1 ct1
	read -r cb0 ct0 <<<"$(cpu_line "$CLIENT_CPU")"
	before=$(cpu_ticks "$@")
	[[ -n ${INFO_SIDS:-} ]] && ibefore=$(cpu_ticks $INFO_SIDS)
	if [[ $kind == h2 ]]; then
		out=$(h2_run "$url" "$conns" "$DURATION")
	elif [[ $kind == rate ]]; then
		out=$(rate_run "$url" "$conns" "$DURATION")
	elif [[ $kind == tlsnew ]]; then
		out=$(tlsnew_run "$url" "$conns" "$DURATION")
	else
		out=$(wrk_run "$url" "$conns" "$DURATION")
	fi
	after=$(cpu_ticks "$@")
	[[ -n ${INFO_SIDS:-} ]] && iafter=$(cpu_ticks $INFO_SIDS)
	read -r cb1 ct1 <<<"$(cpu_line "$CLIENT_CPU")"
	read -r reqs bad secs p99 <<<"$out"
	local cpu_us=$(((after - before) * 1000000 / clk_tck))
	local cli=$(((cb1 - cb0) * 100 / (ct1 - ct0 > 0 ? ct1 - ct0 : 1)))
	printf '%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$section" "$case" "$server" "$role" "$round" "$reqs" "$bad" "$secs" "$cpu_us" "$p99" "$size" "$cli" >>"$results"
	if [[ -n ${INFO_SIDS:-} ]]; then
		printf '%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
			"$section" "$case" "$INFO_NAME" info "$round" "$reqs" 0 "$secs" \
			$(((iafter - ibefore) * 1000000 / clk_tck)) - "$size" - >>"$results"
	fi
	note "$(printf 'round %d %-6s %-8s %-16s %8s req %6s bad  cpu %8s us' \
		"$round" "$section" "$case" "$server" "$reqs" "$bad" "$cpu_us")"
}

# warm KIND URL CONNS: a short unrecorded run.
warm() {
	((WARMUP > 0)) || return 0
	if [[ $1 == h2 ]]; then
		h2_run "$2" "$3" "$WARMUP" >/dev/null
	elif [[ $1 == rate ]]; then
		rate_run "$2" "$3" "$WARMUP" >/dev/null
	elif [[ $1 == tlsnew ]]; then
		tlsnew_run "$2" "$3" "$WARMUP" >/dev/null
	else
		wrk_run "$2" "$3" "$WARMUP" >/dev/null
	fi
}

# report SECTION TITLE BAR...: the table of one section from $results.
# A bar is "CASE|SUBJECT|REF|rps>=X" or "CASE|SUBJECT|REF|cpu<=X".
report() {
	local section=$1 title=$2
	shift 2
	printf '\n== %s: %s ==\n' "$section" "$title"
	printf '%s\n' "${section_notes[@]}"
	awk -F '\t' -v section="$section" -v bars="$(printf '%s\n' "$@")" '
	function median(list,    n, a, i, j, t) {
		n = split(list, a, " ")
		if (n == 0) return ""
		for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
		if (n % 2) return a[(n + 1) / 2]
		return (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function fmt(v, d) { return v == "" ? "-" : sprintf("%." d "f", v) }
	function pct(v) { return v == "" ? "-" : sprintf("%.0f%%", v) }
	$1 == section {
		k = $2 SUBSEP $3
		if (!(k in seen)) { seen[k] = 1; order[++nk] = k; role[k] = $4 }
		if (!($2 in cseen)) { cseen[$2] = 1; cases[++nc] = $2 }
		size[$2] = $11
		secs = $8 + 0
		good = $6 - $7
		if (secs > 0) { rps[k] = rps[k] " " good / secs; busy[k] = busy[k] " " $9 / 10000 / secs }
		if ($12 != "-") cli[k] = cli[k] " " $12
		if ($6 > 0) {
			if ($11 >= 1048576) cpu[k] = cpu[k] " " ($9 / 1000) / ($6 * $11 / 1073741824)
			else cpu[k] = cpu[k] " " $9 / $6
		}
		if ($10 != "-") p99[k] = p99[k] " " $10
		bad[k] += $7; runs[k]++
	}
	END {
		nb = split(bars, bl, "\n")
		if (nc > 0) printf "%-10s %-22s %10s %9s %14s %5s %5s %6s %5s\n", "case", "server", "req/s", "p99 ms", "CPU", "srv", "cli", "bad", "runs"
		for (c = 1; c <= nc; c++) {
			cs = cases[c]
			unit = size[cs] >= 1048576 ? " ms/GiB" : " us/req"
			for (i = 1; i <= nk; i++) {
				split(order[i], kk, SUBSEP)
				if (kk[1] != cs) continue
				k = order[i]
				mr[k] = median(rps[k]); mc[k] = median(cpu[k])
				name = kk[2] (role[k] == "info" ? " (info)" : "")
				printf "%-10s %-22s %10s %9s %14s %5s %5s %6d %5d\n", cs, name, fmt(mr[k], 0), fmt(median(p99[k]), 2), fmt(mc[k], 1) unit, pct(median(busy[k])), pct(median(cli[k])), bad[k], runs[k]
			}
			for (i = 1; i <= nk; i++) {
				split(order[i], si, SUBSEP)
				if (si[1] != cs || (role[order[i]] != "subject" && role[order[i]] != "both")) continue
				for (j = 1; j <= nk; j++) {
					split(order[j], rj, SUBSEP)
					if (j == i || rj[1] != cs || (role[order[j]] != "ref" && role[order[j]] != "both")) continue
					rr = (mr[order[j]] > 0) ? mr[order[i]] / mr[order[j]] : ""
					cr = (mc[order[j]] > 0) ? mc[order[i]] / mc[order[j]] : ""
					verdict = ""
					for (b = 1; b <= nb; b++) {
						if (split(bl[b], f, "|") != 4) continue
						if (f[1] != cs || f[2] != si[2] || f[3] != rj[2]) continue
						if (f[4] ~ /^rps>=/) { want = substr(f[4], 6) + 0; got = rr; ok = (rr != "" && rr >= want) }
						else { want = substr(f[4], 6) + 0; got = cr; ok = (cr != "" && cr <= want) }
						verdict = verdict sprintf("  bar %s: %s", f[4], ok ? "ok" : "MISS")
					}
					printf "%10s %-22s req/s %5sx  CPU %5sx%s\n", "", si[2] "/" rj[2], fmt(rr, 2), fmt(cr, 2), verdict
				}
			}
			if (c < nc) printf "\n"
		}
	}' "$results"
}

section_notes=()
unavailable() { # SERVER REASON
	section_notes+=("$1: not available ($2)")
	note "$1: not available ($2)"
}

# --------------------------------------------------------------- servers

cert="" key=""
make_cert() {
	[[ -n $cert ]] && return 0
	have openssl openssl || return 1
	cert=$tmp/cert.pem key=$tmp/key.pem
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=127.0.0.1 -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
		-keyout "$key" -out "$cert" >/dev/null 2>&1 || { cert=""; return 1; }
	chmod 644 "$key" "$cert"
}

declare -A port_http=() port_https=() port_proxy=()

# alloc NAME: free ports for a server's listeners.
alloc() {
	local p
	free_port p; port_http[$1]=$p
	free_port p; port_https[$1]=$p
	free_port p; port_proxy[$1]=$p
}

# A server started by start_X NAME [ROOT] [BACKEND_PORT] answers on
# port_http[NAME] (and port_https/port_proxy where it has them); on failure
# it returns 1 with $reason set.

start_nginx() {
	local name=$1 root=${2:-$tmp/www} backend=${3:-9}
	have nginx nginx-light || { reason="nginx not installed"; return 1; }
	make_cert || { reason="no certificate (openssl)"; return 1; }
	alloc "$name"
	mkdir -p "$tmp/$name"
	render "$here/nginx.conf.in" "$tmp/$name/nginx.conf" DIR="$tmp/$name" WWW="$root" \
		HTTP_PORT="${port_http[$name]}" HTTPS_PORT="${port_https[$name]}" \
		PROXY_PORT="${port_proxy[$name]}" BACKEND_PORT="$backend" CERT="$cert" KEY="$key"
	start "$name" "$SERVER_CPU" "$(tool nginx)" -c "$tmp/$name/nginx.conf" -e "$tmp/$name/error.log"
	wait_http "$name" "http://127.0.0.1:${port_http[$name]}/" || { reason="did not start: $(why_down "$name")"; stop "$name"; return 1; }
}

start_caddy() {
	local name=$1 backend=${2:-9}
	have caddy caddy || { reason="caddy not installed"; return 1; }
	make_cert || { reason="no certificate (openssl)"; return 1; }
	alloc "$name"
	mkdir -p "$tmp/$name"
	render "$here/Caddyfile.in" "$tmp/$name/Caddyfile" DIR="$tmp/$name" WWW="$tmp/www" \
		HTTP_PORT="${port_http[$name]}" HTTPS_PORT="${port_https[$name]}" \
		PROXY_PORT="${port_proxy[$name]}" BACKEND_PORT="$backend" CERT="$cert" KEY="$key"
	HOME=$tmp/$name XDG_DATA_HOME=$tmp/$name XDG_CONFIG_HOME=$tmp/$name \
		start "$name" "$SERVER_CPU" "$(tool caddy)" run --config "$tmp/$name/Caddyfile" --adapter caddyfile
	wait_http "$name" "http://127.0.0.1:${port_http[$name]}/" || { reason="did not start: $(why_down "$name")"; stop "$name"; return 1; }
}

# Apache and lighttpd refuse to (or should not) run scripts as root.
run_user=$(id -un) run_group=$(id -gn)
if [[ $(id -u) == 0 ]]; then run_user=www-data run_group=www-data; fi

start_apache() {
	local name=$1
	have apache2 apache2 || { reason="apache2 not installed"; return 1; }
	[[ -f /usr/lib/apache2/modules/mod_cgid.so ]] || { reason="no mod_cgid.so (apt-get install apache2)"; return 1; }
	alloc "$name"
	mkdir -p "$tmp/$name"
	render "$here/apache2.conf.in" "$tmp/$name/apache2.conf" DIR="$tmp/$name" WWW="$tmp/www" CGI="$tmp/cgi-bin" \
		HTTP_PORT="${port_http[$name]}" USER="$run_user" GROUP="$run_group"
	start "$name" "$SERVER_CPU" "$(tool apache2)" -f "$tmp/$name/apache2.conf" -DFOREGROUND
	wait_http "$name" "http://127.0.0.1:${port_http[$name]}/" || { reason="did not start: $(why_down "$name")"; stop "$name"; return 1; }
}

start_lighttpd() {
	local name=$1 userline=""
	have lighttpd lighttpd || { reason="lighttpd not installed"; return 1; }
	alloc "$name"
	mkdir -p "$tmp/$name"
	if [[ $(id -u) == 0 ]]; then
		# lighttpd opens its error log after dropping to this user.
		chown "$run_user:$run_group" "$tmp/$name"
		userline="server.username = \"$run_user\"
server.groupname = \"$run_group\""
	fi
	render "$here/lighttpd.conf.in" "$tmp/$name/lighttpd.conf" DIR="$tmp/$name" WWW="$tmp/www" CGI="$tmp/cgi-bin" \
		HTTP_PORT="${port_http[$name]}" USERLINE="${userline//$'\n'/\\n}"
	start "$name" "$SERVER_CPU" "$(tool lighttpd)" -D -f "$tmp/$name/lighttpd.conf"
	wait_http "$name" "http://127.0.0.1:${port_http[$name]}/" || { reason="did not start: $(why_down "$name")"; stop "$name"; return 1; }
}

start_haproxy() {
	local name=$1 backend=$2
	have haproxy haproxy || { reason="haproxy not installed"; return 1; }
	alloc "$name"
	mkdir -p "$tmp/$name"
	render "$here/haproxy.cfg.in" "$tmp/$name/haproxy.cfg" DIR="$tmp/$name" \
		PROXY_PORT="${port_proxy[$name]}" BACKEND_PORT="$backend"
	start "$name" "$SERVER_CPU" "$(tool haproxy)" -db -f "$tmp/$name/haproxy.cfg"
	wait_http "$name" "http://127.0.0.1:${port_proxy[$name]}/" || { reason="did not start: $(why_down "$name")"; stop "$name"; return 1; }
}

declare -A port_routes=() port_fcgi=()

# start_nginx_apps NAME FPM_PORT: nginx from nginx-apps.conf.in: plain
# static on port_http[NAME], the routes' locations on port_routes[NAME],
# fastcgi_pass to 127.0.0.1:FPM_PORT on port_fcgi[NAME].
start_nginx_apps() {
	local name=$1 fpm=${2:-9} p
	have nginx nginx-light || { reason="nginx not installed"; return 1; }
	alloc "$name"
	free_port p; port_routes[$name]=$p
	free_port p; port_fcgi[$name]=$p
	mkdir -p "$tmp/$name"
	render "$here/nginx-apps.conf.in" "$tmp/$name/nginx.conf" DIR="$tmp/$name" WWW="$tmp/www" \
		HTTP_PORT="${port_http[$name]}" ROUTES_PORT="${port_routes[$name]}" \
		FCGI_PORT="${port_fcgi[$name]}" FPM_PORT="$fpm" FPM_KEEPALIVE="$FPM_CONNS"
	start "$name" "$SERVER_CPU" "$(tool nginx)" -c "$tmp/$name/nginx.conf" -e "$tmp/$name/error.log"
	wait_http "$name" "http://127.0.0.1:${port_http[$name]}/" || { reason="did not start: $(why_down "$name")"; stop "$name"; return 1; }
}

# wait_tcp NAME PORT: true once 127.0.0.1:PORT accepts a connection (within
# 20 s) while NAME is still running.
wait_tcp() {
	local i
	for ((i = 0; i < 200; i++)); do
		alive "$1" || return 1
		if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	return 1
}

# start_fpm NAME: one php-fpm pool on 127.0.0.1:port_http[NAME], pm static
# with FPM_CHILDREN workers, running $tmp/www's scripts.
start_fpm() {
	local name=$1 bin="" b userlines="" rflag=()
	for b in php-fpm8.2 php-fpm; do
		if command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]]; then bin=$(tool "$b"); break; fi
	done
	[[ -n $bin ]] || { have php-fpm8.2 php8.2-fpm; reason="php-fpm not installed"; return 1; }
	alloc "$name"
	mkdir -p "$tmp/$name"
	if [[ $(id -u) == 0 ]]; then
		# The master may run as root (-R); the workers run as $run_user.
		userlines="user = $run_user
group = $run_group"
		rflag=(-R)
	fi
	cat >"$tmp/$name/php-fpm.conf" <<-EOF
		[global]
		pid = $tmp/$name/php-fpm.pid
		error_log = $tmp/$name/error.log
		daemonize = no

		[bench]
		$userlines
		listen = 127.0.0.1:${port_http[$name]}
		listen.backlog = 4096
		pm = static
		pm.max_children = $FPM_CHILDREN
		pm.max_requests = 0
	EOF
	start "$name" "$SERVER_CPU" "$bin" -F -y "$tmp/$name/php-fpm.conf" "${rflag[@]}"
	wait_tcp "$name" "${port_http[$name]}" || { reason="did not start: $(why_down "$name")"; stop "$name"; return 1; }
}

tlsnew_bin=""
# build_tlsnew: go build bench/tlsnew once; false (with $reason) without.
build_tlsnew() {
	[[ -n $tlsnew_bin ]] && return 0
	command -v go >/dev/null 2>&1 || { reason="go is not installed (bench/tlsnew is built with it)"; return 1; }
	mkdir -p "$tmp/bin"
	if ! (cd "$repo" && timeout 300 go build -o "$tmp/bin/tlsnew" ./bench/tlsnew) >"$tmp/build-tlsnew.log" 2>&1; then
		reason="go build ./bench/tlsnew failed: $(grep -v '^#' "$tmp/build-tlsnew.log" | head -1)"
		return 1
	fi
	tlsnew_bin=$tmp/bin/tlsnew
}

# expect_status URL STATUS [HEADER]: true when URL answers STATUS (and
# has the response header line HEADER, "Name: value", when given); else
# sets $reason.
expect_status() {
	local url=$1 want=$2 header=${3:-} code
	code=$(curl -sk --max-time 5 -D "$tmp/probe.head" -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)
	if [[ $code != "$want" ]]; then
		reason="GET /${url#*//*/} answered $code, not $want"
		return 1
	fi
	if [[ -n $header ]] && ! tr -d '\r' <"$tmp/probe.head" | grep -qiF -- "$header"; then
		reason="GET /${url#*//*/} answered without \"$header\""
		return 1
	fi
	return 0
}

# ------------------------------------------------------------------ shoal

shoal_bin=${SHOAL:-}
shoal_why=""  # why shoal cannot run at all, once known
shoal_built=""

# build_shoal: go build once; false (with $reason) when there is no binary.
build_shoal() {
	if [[ -n $shoal_built ]]; then
		[[ -z $shoal_why ]] && return 0
		reason=$shoal_why
		return 1
	fi
	shoal_built=1
	if [[ -n $shoal_bin ]]; then
		[[ -x $shoal_bin ]] || shoal_why="SHOAL=$shoal_bin is not an executable"
	elif [[ ! -d $repo/cmd/shoal ]]; then
		shoal_why="no ./cmd/shoal in this checkout"
	elif ! command -v go >/dev/null 2>&1; then
		shoal_why="go is not installed"
	else
		note "building shoal"
		mkdir -p "$tmp/bin"
		if (cd "$repo" && timeout 600 go build -o "$tmp/bin/shoal" ./cmd/shoal) >"$tmp/build.log" 2>&1; then
			shoal_bin=$tmp/bin/shoal
		else
			shoal_why="go build failed: $(grep -v '^#' "$tmp/build.log" | head -1)"
		fi
	fi
	reason=$shoal_why
	[[ -z $shoal_why ]]
}

# shoal_config NAME ADMIN_PORT: the [server] and [log] part of a node's
# config on port_http[NAME], written to stdout.
shoal_config() {
	cat <<EOF
[server]
name = "$1"
http = "127.0.0.1:${port_http[$1]}"
admin = "${2:+127.0.0.1:$2}"
shutdown_grace = "2s"

[log]
access = "off"
level = "warn"
EOF
}

# start_shoal NAME CONFIG: checks and starts a node whose config is in
# $tmp/NAME/config.toml (written by the caller after alloc NAME).
start_shoal() {
	local name=$1 conf=$tmp/$1/config.toml out
	if ! out=$("$shoal_bin" check -config "$conf" 2>&1); then
		reason="shoal check: $(printf '%s' "$out" | head -1)"
		return 1
	fi
	start "$name" "$SERVER_CPU" "$shoal_bin" serve -config "$conf"
	wait_http "$name" "http://127.0.0.1:${port_http[$name]}/" || { reason="did not start: $(why_down "$name")"; stop "$name"; return 1; }
}

# -------------------------------------------------------------- sections

sizes=(1k:1024 16k:16384 256k:262144 10m:10485760)

prepare_files() {
	mkdir -p "$tmp/www" "$tmp/cgi-bin" "$tmp/empty"
	local s
	for s in "${sizes[@]}"; do
		head -c "${s#*:}" /dev/urandom >"$tmp/www/${s%%:*}.bin"
	done
	echo '<!doctype html><title>bench</title><p>bench' >"$tmp/www/index.html"
	mkdir -p "$tmp/www/assets"
	cp "$tmp/www/1k.bin" "$tmp/www/assets/1k.bin"
	printf '<?php echo "hello\\n";\n' >"$tmp/www/hello.php"
	printf '#!/bin/sh\nprintf '"'"'Content-Type: text/plain\\r\\n\\r\\nhello\\n'"'"'\n' >"$tmp/cgi-bin/hello.sh"
	printf '#!/bin/sh\nsleep %s\nprintf '"'"'Content-Type: text/plain\\r\\n\\r\\n%%s\\n'"'"' "$SHOAL_NODE"\n' \
		"$SCALE_SLEEP" >"$tmp/cgi-bin/slow.sh"
	printf '#!/bin/sh\nprintf '"'"'Content-Type: text/plain\\r\\n\\r\\n%%s\\n'"'"' "$SHOAL_NODE"\n' >"$tmp/cgi-bin/node.sh"
	chmod 755 "$tmp" "$tmp/www" "$tmp/cgi-bin" "$tmp/empty" "$tmp"/cgi-bin/*.sh
	chmod 755 "$tmp/www/assets"
	chmod 644 "$tmp"/www/*.* "$tmp"/www/assets/*
}

# run_rounds SECTION: for each round, each case, each server in turn.
# Cases are in $cases (NAME|KIND|PATH|CONNS|SIZE), servers in $servers
# (NAME|ROLE|BASEURL|SUFFIX|SID...; SUFFIX is appended to the case's path).
# With $INFO_SIDS set, that CPU is also recorded per server as an info row
# "origin<-NAME".
run_rounds() {
	local section=$1 c s r name kind path conns size server role base suffix sids url
	for ((r = 1; r <= ROUNDS; r++)); do
		round=$r
		for c in "${cases[@]}"; do
			IFS='|' read -r name kind path conns size <<<"$c"
			for s in "${servers[@]}"; do
				IFS='|' read -r server role base suffix sids <<<"$s"
				if over_budget; then
					note "budget of ${BUDGET}s spent: stopping $section at round $r"
					section_notes+=("(budget of ${BUDGET}s spent: $section stopped in round $r of $ROUNDS)")
					return 0
				fi
				url=$base$path$suffix
				if [[ $r == 1 ]]; then warm "$kind" "$url" "$conns"; fi
				INFO_NAME="origin<-$server" measure "$section" "$name" "$server" "$role" "$kind" "$url" "$conns" "$size" $sids
			done
		done
	done
}

static_cases() {
	cases=()
	local s n
	for s in "${sizes[@]}"; do
		n=${s%%:*}
		if [[ $n == 10m ]]; then
			cases+=("$n|wrk|/$n.bin|$BIG_CONNS|${s#*:}")
		else
			cases+=("$n|wrk|/$n.bin|$CONNS|${s#*:}")
		fi
	done
}

section_static() {
	section_notes=()
	servers=()
	have wrk wrk || { section_notes+=("wrk missing: section skipped"); report static "skipped"; return; }
	if start_nginx nginx; then servers+=("nginx|ref|http://127.0.0.1:${port_http[nginx]}||${spid[nginx]}"); else unavailable nginx "$reason"; fi
	if start_caddy caddy; then servers+=("caddy|ref|http://127.0.0.1:${port_http[caddy]}||${spid[caddy]}"); else unavailable caddy "$reason"; fi
	if shoal_static shoal "$tmp/www"; then
		if expect_200 "http://127.0.0.1:${port_http[shoal]}/1k.bin"; then
			servers+=("shoal|subject|http://127.0.0.1:${port_http[shoal]}||${spid[shoal]}")
		else
			unavailable shoal "$reason"
		fi
	else
		unavailable shoal "$reason"
	fi
	static_cases
	run_rounds static
	stop_all
	report static "GET, HTTP/1.1 keep-alive, wrk -t1 -c$CONNS (10m: -c$BIG_CONNS), $ROUNDS x ${DURATION}s, medians" \
		"1k|shoal|nginx|rps>=0.8" "1k|shoal|caddy|rps>=2.0" \
		"16k|shoal|nginx|rps>=0.8" "16k|shoal|caddy|rps>=2.0" \
		"10m|shoal|nginx|cpu<=1.2"
}

# shoal_static NAME ROOT [EXTRA_TOML]: a plain shoal node serving ROOT.
shoal_static() {
	local name=$1 root=$2 extra=${3:-}
	build_shoal || return 1
	alloc "$name"
	mkdir -p "$tmp/$name"
	{
		shoal_config "$name" ""
		printf '\n[[site]]\nroot = "%s"\n%s\n' "$root" "$extra"
	} >"$tmp/$name/config.toml"
	start_shoal "$name"
}

section_page() {
	section_notes=()
	servers=()
	cases=()
	have wrk wrk || { section_notes+=("wrk missing: section skipped"); report page "skipped"; return; }
	local size=0 base
	if build_shoal; then
		cp "$here/page/page.tmpl" "$tmp/www/page.tmpl"
		rm -rf "$tmp/templates"
		cp -r "$here/page/templates" "$tmp/templates"
		chmod -R a+rX "$tmp/www" "$tmp/templates"
		if shoal_static shoal "$tmp/www" "templates = \"$tmp/templates\""; then
			base=http://127.0.0.1:${port_http[shoal]}
			if ! expect_200 "$base/page"; then
				unavailable shoal "templates: $reason"
			elif curl -s --max-time 5 "$base/page" -o "$tmp/www/page.html" && grep -q '{{' "$tmp/www/page.html"; then
				unavailable shoal "templates: /page answers its source"
			elif ! expect_200 "$base/page.html"; then
				unavailable shoal "static copy of the page: $reason"
			else
				size=$(wc -c <"$tmp/www/page.html")
				servers+=("shoal-page|subject|$base||${spid[shoal]}")
				servers+=("shoal-static|ref|$base|.html|${spid[shoal]}")
			fi
		else
			unavailable shoal "$reason"
		fi
	else
		unavailable shoal "$reason"
	fi
	if ((size > 0)); then
		if start_nginx nginx; then
			servers+=("nginx-static|ref|http://127.0.0.1:${port_http[nginx]}|.html|${spid[nginx]}")
		else
			unavailable nginx "$reason"
		fi
		# Both shoal rows hit the same process; the page row asks for
		# /page, the others for /page.html (the same bytes, saved once).
		cases=("page-$((size / 1024))k|wrk|/page|$CONNS|$size")
		run_rounds page
	fi
	stop_all
	local title=skipped
	((size > 0)) && title="a template page vs the same $size bytes as a static file, wrk -t1 -c$CONNS, $ROUNDS x ${DURATION}s, medians"
	report page "$title" \
		"page-$((size / 1024))k|shoal-page|shoal-static|cpu<=3.0"
}

section_cgi() {
	section_notes=()
	servers=()
	have wrk wrk || { section_notes+=("wrk missing: section skipped"); report cgi "skipped"; return; }
	if start_apache apache; then
		if expect_200 "http://127.0.0.1:${port_http[apache]}/cgi-bin/hello.sh" hello; then
			servers+=("apache-cgid|ref|http://127.0.0.1:${port_http[apache]}||${spid[apache]}")
		else unavailable apache "$reason"; fi
	else unavailable apache "$reason"; fi
	if start_lighttpd lighttpd; then
		if expect_200 "http://127.0.0.1:${port_http[lighttpd]}/cgi-bin/hello.sh" hello; then
			servers+=("lighttpd-cgi|ref|http://127.0.0.1:${port_http[lighttpd]}||${spid[lighttpd]}")
		else unavailable lighttpd "$reason"; fi
	else unavailable lighttpd "$reason"; fi
	local cgi
	cgi=$(printf '\n[[site.cgi]]\nprefix = "/cgi-bin/"\ndir = "%s"\nmax_concurrent = %d\ntimeout = "30s"\n' \
		"$tmp/cgi-bin" $((CGI_CONNS * 4)))
	if shoal_static shoal "$tmp/www" "$cgi"; then
		if expect_200 "http://127.0.0.1:${port_http[shoal]}/cgi-bin/hello.sh" hello; then
			servers+=("shoal|subject|http://127.0.0.1:${port_http[shoal]}||${spid[shoal]}")
		else unavailable shoal "cgi: $reason"; fi
	else unavailable shoal "$reason"; fi
	cases=("hello-sh|wrk|/cgi-bin/hello.sh|$CGI_CONNS|6")
	run_rounds cgi
	stop_all
	report cgi "hello-world sh CGI, wrk -t1 -c$CGI_CONNS, $ROUNDS x ${DURATION}s, medians (CPU is the server processes only, not the scripts)" \
		"hello-sh|shoal|apache-cgid|rps>=1.3" "hello-sh|shoal|lighttpd-cgi|rps>=1.1"
}

section_tls() {
	section_notes=()
	servers=()
	cases=()
	have wrk wrk || { section_notes+=("wrk missing: section skipped"); report tls "skipped"; return; }
	make_cert || { section_notes+=("no certificate: section skipped"); report tls "skipped"; return; }
	local h2=""
	have h2load nghttp2-client && h2=1
	if start_nginx nginx; then
		servers+=("nginx|ref|https://127.0.0.1:${port_https[nginx]}||${spid[nginx]}")
	else unavailable nginx "$reason"; fi
	if start_caddy caddy; then
		servers+=("caddy|ref|https://127.0.0.1:${port_https[caddy]}||${spid[caddy]}")
	else unavailable caddy "$reason"; fi
	if shoal_tls shoal; then
		servers+=("shoal|subject|https://127.0.0.1:${port_https[shoal]}||${spid[shoal]}")
		local v
		v=$(curl -sk --http2 -o /dev/null -w '%{http_version}' "https://127.0.0.1:${port_https[shoal]}/1k.bin")
		[[ $v == 2 ]] || section_notes+=("shoal: HTTP/2 not negotiated (curl saw HTTP/$v)")
	else unavailable shoal "$reason"; fi
	cases=("h1-1k|wrk|/1k.bin|$CONNS|1024")
	[[ -n $h2 ]] && cases+=("h2-1k|h2|/1k.bin|$H2_CONNS|1024")
	run_rounds tls
	stop_all
	# Bars of issue 16 against nginx; Caddy's from before.
	report tls "HTTPS/1.1 keep-alive wrk -t1 -c$CONNS; HTTP/2 h2load -t1 -c$H2_CONNS -m$H2_STREAMS; 1 KiB, $ROUNDS x ${DURATION}s, medians" \
		"h1-1k|shoal|caddy|rps>=1.5" "h1-1k|shoal|nginx|rps>=1.0" \
		"h2-1k|shoal|caddy|rps>=1.5" "h2-1k|shoal|nginx|rps>=1.5"
}

# shoal_tls NAME: a shoal node serving $tmp/www on port_http[NAME] and, with
# the bench certificate, port_https[NAME]; false (with $reason) unless
# /1k.bin answers 200 over HTTPS.
shoal_tls() {
	local name=$1
	build_shoal || return 1
	make_cert || { reason="no certificate (openssl)"; return 1; }
	alloc "$name"
	mkdir -p "$tmp/$name"
	{
		shoal_config "$name" ""
		printf '\n[tls]\ncert = "%s"\nkey = "%s"\n\n[[site]]\nroot = "%s"\n' "$cert" "$key" "$tmp/www"
	} >"$tmp/$name/config.toml"
	sed -i "s|^http = .*|&\nhttps = \"127.0.0.1:${port_https[$name]}\"|" "$tmp/$name/config.toml"
	start_shoal "$name" || return 1
	if ! expect_200 "https://127.0.0.1:${port_https[$name]}/1k.bin"; then
		reason="tls: $reason"
		stop "$name"
		return 1
	fi
}

# cluster_node NAME ADMIN_PORT GOSSIP_PORT SECRET JOIN_PORT CLUSTER_TOML
# SITE_TOML [ROOT]: writes and starts one cluster node (alloc NAME first).
cluster_node() {
	local name=$1 admin=$2 gossip=$3 secret=$4 join=$5 ctoml=$6 stoml=$7 root=${8:-$tmp/www}
	{
		shoal_config "$name" "$admin"
		printf '\n[[site]]\nroot = "%s"\n%s\n' "$root" "$stoml"
		printf '\n[cluster]\nenabled = true\ngossip = "127.0.0.1:%s"\nsecret = "%s"\n' "$gossip" "$secret"
		[[ -n $join ]] && printf 'join = ["127.0.0.1:%s"]\n' "$join"
		[[ -n $PEER_TLS ]] && printf 'peer_tls = %s\n' "$PEER_TLS"
		printf '%s\n' "$ctoml"
	} >"$tmp/$name/config.toml"
	start_shoal "$name"
}

new_secret() { head -c 32 /dev/urandom | base64; }

# has_cluster ADMIN_PORT: true when the node's admin listener answers
# /api/cluster with a member list; else sets $reason.
has_cluster() {
	local code
	code=$(curl -s --max-time 2 -o "$tmp/probe.body" -w '%{http_code}' "http://127.0.0.1:$1/api/cluster" 2>/dev/null)
	if [[ $code == 200 ]] && grep -q '"members"' "$tmp/probe.body"; then
		return 0
	fi
	reason="cluster: GET /api/cluster on the admin listener answered $code"
	return 1
}

# alive_members ADMIN_PORT: how many members /api/cluster lists as alive.
alive_members() {
	curl -s --max-time 2 "http://127.0.0.1:$1/api/cluster" 2>/dev/null | grep -o '"state": *"alive"' | wc -l
}

# wait_members ADMIN_PORT N: true once the node sees N alive members
# (within 20 s); else sets $reason.
wait_members() {
	local i seen=0
	has_cluster "$1" || return 1
	for ((i = 0; i < 100; i++)); do
		seen=$(alive_members "$1")
		((seen >= $2)) && return 0
		sleep 0.2
	done
	reason="cluster: after 20s /api/cluster lists $seen alive members, not $2"
	return 1
}

section_proxy() {
	section_notes=()
	servers=()
	have wrk wrk || { section_notes+=("wrk missing: section skipped"); report proxy "skipped"; return; }
	local origin="" oport osid
	origin_name="" front_name="" front_why=""
	# The origin: a shoal node when shoal runs, else nginx.
	if build_shoal; then
		if shoal_pair; then
			origin=shoal
		else
			unavailable "shoal origin" "$reason"
		fi
	else
		unavailable shoal "$reason"
	fi
	if [[ -z $origin ]]; then
		origin_name=origin
		if start_nginx origin; then origin=nginx; else
			section_notes+=("no origin server: $reason")
			report proxy "skipped"
			return
		fi
	fi
	oport=${port_http[$origin_name]}
	osid=${spid[$origin_name]}
	section_notes+=("origin: $origin on 127.0.0.1:$oport, pinned with the proxy to CPU $SERVER_CPU")
	section_notes+=("shoal hop: $(peer_tls_used)")
	if start_nginx nginx "$tmp/www" "$oport"; then
		servers+=("nginx|ref|http://127.0.0.1:${port_proxy[nginx]}||${spid[nginx]}")
	else unavailable nginx "$reason"; fi
	if start_haproxy haproxy "$oport"; then
		servers+=("haproxy|ref|http://127.0.0.1:${port_proxy[haproxy]}||${spid[haproxy]}")
	else unavailable haproxy "$reason"; fi
	if start_caddy caddy "$oport"; then
		servers+=("caddy|ref|http://127.0.0.1:${port_proxy[caddy]}||${spid[caddy]}")
	else unavailable caddy "$reason"; fi
	if [[ -n $front_name ]]; then
		servers+=("shoal|subject|http://127.0.0.1:${port_http[$front_name]}||${spid[$front_name]}")
	elif [[ $origin == shoal ]]; then
		unavailable shoal "front node: $front_why"
	fi
	cases=("1k|wrk|/1k.bin|$CONNS|1024")
	INFO_SIDS=$osid
	run_rounds proxy
	INFO_SIDS=""
	stop_all
	# Two bars against nginx: issue 12's (peer_tls on) and issue 15's.
	report proxy "one hop to the same origin, 1 KiB GET, wrk -t1 -c$CONNS, $ROUNDS x ${DURATION}s, medians; CPU is the proxy's" \
		"1k|shoal|nginx|rps>=0.6" "1k|shoal|nginx|rps>=0.9" "1k|shoal|caddy|rps>=1.5"
}

# peer_tls_used: which cluster.peer_tls the cluster nodes run with.
peer_tls_used() {
	if [[ -z $PEER_TLS ]]; then
		printf 'cluster.peer_tls = true (the default: mutual TLS between the nodes, certificates derived from the shared secret)'
	elif [[ $PEER_TLS == true ]]; then
		printf 'cluster.peer_tls = true (PEER_TLS=true: mutual TLS between the nodes)'
	else
		printf 'cluster.peer_tls = %s (PEER_TLS=%s: plain HTTP between the nodes)' "$PEER_TLS" "$PEER_TLS"
	fi
}

# shoal_pair: starts a shoal origin and, in the same cluster, the shoal
# node that proxies to it; sets $origin_name, and $front_name (or
# $front_why when there is no front). False, with $reason, only when not
# even the origin runs. Both nodes serve the same folder with the same
# site config (a node balances a site only to peers whose hash of it,
# files included, equals its own) and share the secret (peer_tls derives
# their certificates from it). The front has balance "all" and policy
# ip_hash: every request from 127.0.0.1 goes to the one node the client
# address hashes to. Pairs of node names are tried until that node is the
# origin: /cgi-bin/node.sh, asked of the front, names the node that ran it.
shoal_pair() {
	local k tries=8 secret og oa fg fa i got o f site
	site=$(printf '\n[[site.cgi]]\nprefix = "/cgi-bin/"\ndir = "%s"\n' "$tmp/cgi-bin")
	for ((k = 1; k <= tries; k++)); do
		o=origin$k f=front$k
		secret=$(new_secret)
		alloc "$o"
		mkdir -p "$tmp/$o"
		free_port og
		free_port oa
		if ! cluster_node "$o" "$oa" "$og" "$secret" "" \
			"$(printf 'capacity = 100000\nbalance = "all"')" "$site" ||
			! expect_200 "http://127.0.0.1:${port_http[$o]}/1k.bin"; then
			stop "$o"
			return 1
		fi
		origin_name=$o
		alloc "$f"
		mkdir -p "$tmp/$f"
		free_port fg
		free_port fa
		if ! cluster_node "$f" "$fa" "$fg" "$secret" "$og" \
			"$(printf 'balance = "all"\nmode = "proxy"\npolicy = "ip_hash"')" "$site"; then
			front_why=$reason
			return 0
		fi
		if ! wait_members "$fa" 2; then
			front_why=$reason
			stop "$f"
			return 0
		fi
		# The peer's metadata (its site hash) may come a moment after it
		# is alive: ask for a while.
		for ((i = 0; i < 30; i++)); do
			got=$(curl -s --max-time 2 "http://127.0.0.1:${port_http[$f]}/cgi-bin/node.sh" 2>/dev/null)
			if [[ $got == "$o" ]]; then
				front_name=$f
				return 0
			fi
			sleep 0.1
		done
		front_why="GET /cgi-bin/node.sh through the front node never reached the origin (last answer \"${got:0:60}\", $k pairs of node names tried)"
		stop "$f"
		((k < tries)) && stop "$o"
	done
	return 0
}

section_scale() {
	section_notes=()
	servers=()
	have h2load nghttp2-client || { section_notes+=("h2load missing: section skipped"); report scale "skipped"; return; }
	build_shoal || { unavailable shoal "$reason"; report scale "skipped"; return; }
	local n i secret g0 g a name cgi ctoml sids first ok first_admin
	cgi=$(printf '\n[[site.cgi]]\nprefix = "/cgi-bin/"\ndir = "%s"\nmax_concurrent = %d\ntimeout = "30s"\n' \
		"$tmp/cgi-bin" "$SCALE_MAXC")
	ctoml=$(printf 'capacity = %d\nbalance = "dynamic"\nmode = "proxy"\npolicy = "least_loaded"' "$SCALE_MAXC")
	for n in 1 2 3; do
		secret=$(new_secret)
		sids="" first="" ok=1 g0="" first_admin=""
		for ((i = 1; i <= n; i++)); do
			name=c$n-n$i
			alloc "$name"
			mkdir -p "$tmp/$name"
			free_port g
			free_port a
			[[ -z $g0 ]] && g0=$g
			[[ -z $first_admin ]] && first_admin=$a
			if ! cluster_node "$name" "$a" "$g" "$secret" "$([[ $i -gt 1 ]] && echo "$g0")" "$ctoml" "$cgi"; then
				ok=""
				break
			fi
			sids+=" ${spid[$name]}"
			[[ -z $first ]] && first=$name
		done
		if [[ -z $ok ]]; then
			unavailable "shoal $n-node cluster" "$reason"
			continue
		fi
		if ! expect_200 "http://127.0.0.1:${port_http[$first]}/cgi-bin/slow.sh"; then
			unavailable "shoal $n-node cluster" "cgi: $reason"
			continue
		fi
		if ! wait_members "$first_admin" "$n"; then
			unavailable "shoal $n-node cluster" "$reason"
			continue
		fi
		if ((n > 1)) && ! wait_spread "http://127.0.0.1:${port_http[$first]}/cgi-bin/slow.sh" "$n"; then
			unavailable "shoal $n-node cluster" "$reason"
			continue
		fi
		if ((n == 1)); then
			servers+=("1-node|ref|http://127.0.0.1:${port_http[$first]}||${sids# }")
		else
			servers+=("$n-nodes|subject|http://127.0.0.1:${port_http[$first]}||${sids# }")
		fi
	done
	section_notes+=("$(peer_tls_used)")
	section_notes+=("each node: max_concurrent = capacity = $SCALE_MAXC, script sleeps ${SCALE_SLEEP}s: one node tops out near $(awk -v m="$SCALE_MAXC" -v s="$SCALE_SLEEP" 'BEGIN{printf "%.0f", m / s}') req/s; CPU is all nodes together")
	cases=("cgi-sleep|rate|/cgi-bin/slow.sh|$SCALE_CONNS|16")
	run_rounds scale
	stop_all
	report scale "all traffic to node 1, $SCALE_RATE req/s offered by h2load --h1 -c$SCALE_CONNS -m1, $ROUNDS x ${DURATION}s, medians; 503s count as bad" \
		"cgi-sleep|3-nodes|1-node|rps>=2.7"
}

# wait_spread URL N: true once a burst of requests to URL is answered by N
# different nodes (the script prints its node), within 30 s.
wait_spread() {
	local i seen burst=$((SCALE_MAXC * $2 * 2)) args=() k
	for ((k = 0; k < burst; k++)); do args+=("$1"); done
	for ((i = 0; i < 30; i++)); do
		seen=$(curl -s --max-time 10 -Z --parallel-max "$burst" "${args[@]}" 2>/dev/null | sort -u | grep -c .)
		((seen >= $2)) && return 0
		sleep 1
	done
	reason="cluster did not spread a burst of $burst requests over $2 nodes within 30s (saw $seen)"
	return 1
}

section_routes() {
	section_notes=()
	servers=()
	have wrk wrk || { section_notes+=("wrk missing: section skipped"); report routes "skipped"; return; }
	local immutable='Cache-Control: public, max-age=31536000, immutable' base
	if start_nginx_apps nginx; then
		base=http://127.0.0.1:${port_routes[nginx]}
		if ! expect_status "$base/assets/1k.bin" 200 "$immutable"; then
			unavailable nginx-routes "$reason"
		elif ! expect_status "$base/healthz" 204 || ! expect_status "$base/data/x" 403; then
			unavailable nginx-routes "$reason"
		else
			servers+=("nginx-routes|ref|$base||${spid[nginx]}")
		fi
		servers+=("nginx|ref|http://127.0.0.1:${port_http[nginx]}||${spid[nginx]}")
	else unavailable nginx "$reason"; fi
	if shoal_static shoal-routes "$tmp/www" "$(cat "$here/routes.toml")"; then
		base=http://127.0.0.1:${port_http[shoal-routes]}
		if ! expect_status "$base/assets/1k.bin" 200 "$immutable"; then
			unavailable shoal-routes "routes: $reason"
		elif ! expect_status "$base/healthz" 204 || ! expect_status "$base/data/x" 403; then
			unavailable shoal-routes "routes: $reason"
		else
			servers+=("shoal-routes|subject|$base||${spid[shoal-routes]}")
		fi
	else unavailable shoal-routes "$reason"; fi
	if shoal_static shoal "$tmp/www"; then
		if expect_200 "http://127.0.0.1:${port_http[shoal]}/assets/1k.bin"; then
			servers+=("shoal|both|http://127.0.0.1:${port_http[shoal]}||${spid[shoal]}")
		else unavailable shoal "$reason"; fi
	else unavailable shoal "$reason"; fi
	section_notes+=("shoal-routes, nginx-routes: the 10 routes of bench/routes.toml and the equivalent nginx locations (the file gets Cache-Control: immutable from both, checked); shoal, nginx: the same site without routes")
	cases=("1k|wrk|/assets/1k.bin|$CONNS|1024")
	run_rounds routes
	stop_all
	# Issue 14's bar; shoal-routes/shoal is the route walk's cost.
	report routes "GET /assets/1k.bin, HTTP/1.1 keep-alive, wrk -t1 -c$CONNS, $ROUNDS x ${DURATION}s, medians" \
		"1k|shoal-routes|nginx-routes|rps>=1.3"
}

section_upstream() {
	section_notes=()
	servers=()
	have wrk wrk || { section_notes+=("wrk missing: section skipped"); report upstream "skipped"; return; }
	local bport bsid backend=""
	# The backend: nginx serving the files on its own port; a shoal node
	# when there is no nginx.
	if start_nginx app; then
		backend=nginx
	elif shoal_static app "$tmp/www"; then
		backend=shoal
	else
		section_notes+=("no backend: $reason")
		report upstream "skipped"
		return
	fi
	bport=${port_http[app]}
	bsid=${spid[app]}
	section_notes+=("backend: $backend on 127.0.0.1:$bport, pinned with the proxy to CPU $SERVER_CPU")
	if start_nginx nginx "$tmp/www" "$bport"; then
		if expect_200 "http://127.0.0.1:${port_proxy[nginx]}/1k.bin"; then
			servers+=("nginx|ref|http://127.0.0.1:${port_proxy[nginx]}||${spid[nginx]}")
		else unavailable nginx "proxy_pass: $reason"; fi
	else unavailable nginx "$reason"; fi
	local up
	up=$(printf '\n[[site.route]]\npath = "/*"\nupstream = "app"\n\n[[upstream]]\nname = "app"\ntargets = ["http://127.0.0.1:%s"]\n' "$bport")
	if shoal_static shoal "$tmp/empty" "$up"; then
		if expect_200 "http://127.0.0.1:${port_http[shoal]}/1k.bin"; then
			servers+=("shoal|subject|http://127.0.0.1:${port_http[shoal]}||${spid[shoal]}")
		else unavailable shoal "upstream: $reason"; fi
	else unavailable shoal "$reason"; fi
	cases=("1k|wrk|/1k.bin|$CONNS|1024")
	INFO_SIDS=$bsid
	run_rounds upstream
	INFO_SIDS=""
	stop_all
	# Issue 15's bar.
	report upstream "an HTTP upstream, 1 KiB GET, wrk -t1 -c$CONNS, $ROUNDS x ${DURATION}s, medians; CPU is the proxy's" \
		"1k|shoal|nginx|rps>=1.0"
}

section_fastcgi() {
	section_notes=()
	servers=()
	have wrk wrk || { section_notes+=("wrk missing: section skipped"); report fastcgi "skipped"; return; }
	if ! start_fpm fpm; then
		section_notes+=("php-fpm: not available ($reason): section skipped")
		report fastcgi "skipped"
		return
	fi
	local fport=${port_http[fpm]} fsid=${spid[fpm]}
	section_notes+=("php-fpm on 127.0.0.1:$fport, pm static, $FPM_CHILDREN workers shared by both servers, pinned with them to CPU $SERVER_CPU")
	if start_nginx_apps nginx "$fport"; then
		if expect_200 "http://127.0.0.1:${port_fcgi[nginx]}/hello.php" hello; then
			servers+=("nginx|ref|http://127.0.0.1:${port_fcgi[nginx]}||${spid[nginx]}")
		else unavailable nginx "fastcgi_pass: $reason"; fi
	else unavailable nginx "$reason"; fi
	local up
	up=$(printf '\n[[site.route]]\npath = "*.php"\nupstream = "php"\n\n[[upstream]]\nname = "php"\ntargets = ["fastcgi://127.0.0.1:%s"]\nroot = "%s"\n' "$fport" "$tmp/www")
	if shoal_static shoal "$tmp/www" "$up"; then
		if expect_200 "http://127.0.0.1:${port_http[shoal]}/hello.php" hello; then
			servers+=("shoal|subject|http://127.0.0.1:${port_http[shoal]}||${spid[shoal]}")
		else unavailable shoal "fastcgi: $reason"; fi
	else unavailable shoal "$reason"; fi
	cases=("hello-php|wrk|/hello.php|$FPM_CONNS|6")
	INFO_SIDS=$fsid
	run_rounds fastcgi
	INFO_SIDS=""
	stop_all
	# Issue 15's bar.
	report fastcgi "hello.php through php-fpm, wrk -t1 -c$FPM_CONNS, $ROUNDS x ${DURATION}s, medians; CPU is the server's, the origin<- rows php-fpm's" \
		"hello-php|shoal|nginx|rps>=1.0"
}

section_tlsnew() {
	section_notes=()
	servers=()
	make_cert || { section_notes+=("no certificate: section skipped"); report tlsnew "skipped"; return; }
	build_tlsnew || { section_notes+=("no client: $reason: section skipped"); report tlsnew "skipped"; return; }
	if start_nginx nginx; then
		servers+=("nginx|ref|https://127.0.0.1:${port_https[nginx]}||${spid[nginx]}")
	else unavailable nginx "$reason"; fi
	if start_caddy caddy; then
		servers+=("caddy|ref|https://127.0.0.1:${port_https[caddy]}||${spid[caddy]}")
	else unavailable caddy "$reason"; fi
	if shoal_tls shoal; then
		servers+=("shoal|subject|https://127.0.0.1:${port_https[shoal]}||${spid[shoal]}")
	else unavailable shoal "$reason"; fi
	section_notes+=("client: bench/tlsnew -c $TLSNEW_CONNS, TLS 1.3, X25519, no session cache, a full handshake per request; req/s = new connections/s")
	cases=("tls13-new|tlsnew|/1k.bin|$TLSNEW_CONNS|1024")
	run_rounds tlsnew
	stop_all
	# Issue 16's bar.
	report tlsnew "a new TLS 1.3 connection per 1 KiB GET, ECDSA P-256, $ROUNDS x ${DURATION}s, medians; CPU is per connection" \
		"tls13-new|shoal|nginx|rps>=0.8"
}

# ------------------------------------------------------------------- main

case ${1:-} in
-h | --help | help)
	sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
	exit 0
	;;
esac

sections=("$@")
((${#sections[@]})) || sections=("${all_sections[@]}")
for s in "${sections[@]}"; do
	case " ${all_sections[*]} " in
	*" $s "*) ;;
	*) die "unknown section \"$s\" (one of: ${all_sections[*]})" ;;
	esac
done

for t in curl:curl taskset:util-linux ss:iproute2 setsid:util-linux; do
	have "${t%%:*}" "${t#*:}" || die "${t%%:*} is required"
done
for c in "$SERVER_CPU" "$CLIENT_CPU"; do
	taskset -c "$c" true 2>/dev/null || die "cannot pin to CPU $c (set SERVER_CPU and CLIENT_CPU to CPUs this machine has)"
done
if ((SERVER_CPU == CLIENT_CPU)); then
	note "warning: SERVER_CPU = CLIENT_CPU = $SERVER_CPU: server and load generator share one core"
fi

tmp=$(mktemp -d /tmp/shoal-bench.XXXXXX) || die "mktemp failed"
trap cleanup EXIT
trap 'exit 130' INT TERM
results=$tmp/results.tsv
: >"$results"
prepare_files

printf 'shoal bench: %s; %s rounds x %ss; server on CPU %s, client on CPU %s; %s\n' \
	"${sections[*]}" "$ROUNDS" "$DURATION" "$SERVER_CPU" "$CLIENT_CPU" "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf 'machine: %s CPUs, load %s; shoal from %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
	"${SHOAL:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo "$repo")}"

for s in "${sections[@]}"; do
	"section_$s"
done
