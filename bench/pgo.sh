#!/usr/bin/env bash
# bench/pgo.sh: regenerates cmd/shoal/default.pgo, the CPU profile `go
# build` uses for profile-guided optimization of the shoal binary (it
# inlines and devirtualizes the calls the profile shows hot).
#
# The profile is server/'s request-path benchmarks, each the same time:
# static files, 304s, a template page, HTTPS/1.1 (kept and new
# connections), HTTP/2 fast answers, an HTTP upstream, a FastCGI
# application (skipped without php-fpm) and a cluster hop. They run a
# real node over real loopback connections, with their backends in the
# same process; those backends' share of the profile does no harm (it
# only makes net/http's server code hot, which the full chain uses too).
#
# Run it after a change to the request path, on a quiet machine:
#
#   bench/pgo.sh            # writes cmd/shoal/default.pgo
#   BENCHTIME=1s bench/pgo.sh
#
# Knobs: BENCHTIME (per benchmark, default 3s).
set -euo pipefail
cd "$(dirname "$0")/.."
out=cmd/shoal/default.pgo
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
benches='NodeStatic|NodeWire$|NodeWirePage|NodeWireTLS|H2FastAnswer|NodeWireUpstream|NodeWireFastCGI|NodeWireHop'
# -pgo=off: the profile describes the code, not how the last profile
# compiled it.
go test ./server -pgo=off -run '^$' -bench "$benches" -benchtime "${BENCHTIME:-3s}" \
	-cpuprofile "$tmp/server.prof" -o "$tmp/server.test" | grep -E '^(Benchmark|ok|FAIL)'
cp "$tmp/server.prof" "$out"
echo "wrote $out ($(wc -c <"$out") bytes)"
