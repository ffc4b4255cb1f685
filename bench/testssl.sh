#!/usr/bin/env bash
# bench/testssl.sh: check shoal's HTTPS listener with testssl.sh (Debian
# package "testssl.sh", command `testssl`) and fail on any finding of
# severity HIGH or CRITICAL.
#
# By default it builds ./cmd/shoal, makes a throwaway CA and a 90-day
# ECDSA certificate for localhost/127.0.0.1 (with a CRL URI, as a real CA
# would put in, so testssl judges the server and not a toy certificate),
# starts shoal on a free port of 127.0.0.1 with hsts set, runs every testssl
# check (protocols, ciphers, forward secrecy, server preferences, headers,
# vulnerabilities) and prints a summary.
#
#   bench/testssl.sh                     build and check shoal
#   bench/testssl.sh -t HOST:PORT -c CA  check a server that is already running
#   bench/testssl.sh -k                  keep the work folder (report, logs)
#
# Exit: 0 no HIGH/CRITICAL finding, 1 such findings (listed), 2 could not run.
set -euo pipefail

target="" ca="" keep=0
while getopts "t:c:k" opt; do
	case $opt in
	t) target=$OPTARG ;;
	c) ca=$OPTARG ;;
	k) keep=1 ;;
	*) echo "usage: $0 [-t HOST:PORT -c CA.pem] [-k]" >&2; exit 2 ;;
	esac
done

for tool in testssl openssl jq; do
	command -v "$tool" >/dev/null || { echo "testssl.sh: $tool not found (apt-get install testssl.sh openssl jq)" >&2; exit 2; }
done

cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/shoal-testssl.XXXXXX")
shoal_pid=""
cleanup() {
	if [[ -n $shoal_pid ]]; then
		kill "$shoal_pid" 2>/dev/null || true
		wait "$shoal_pid" 2>/dev/null || true
	fi
	if [[ $keep == 1 ]]; then echo "work folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

make_certs() {
	openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$work/ca.key" -sha256 -days 365 -subj "/CN=shoal testssl throwaway CA" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$work/ca.pem" 2>/dev/null
	openssl ecparam -name prime256v1 -genkey -noout -out "$work/leaf.key" 2>/dev/null
	openssl req -new -key "$work/leaf.key" -subj "/CN=localhost" -out "$work/leaf.csr" 2>/dev/null
	cat >"$work/leaf.ext" <<-EOF
		subjectAltName = DNS:localhost, IP:127.0.0.1
		keyUsage = critical, digitalSignature
		extendedKeyUsage = serverAuth
		basicConstraints = critical, CA:FALSE
		crlDistributionPoints = URI:http://127.0.0.1/shoal-testssl.crl
	EOF
	openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
		-days 90 -sha256 -extfile "$work/leaf.ext" -out "$work/leaf.pem" 2>/dev/null
	# The chain a real deployment serves: leaf then issuer.
	cat "$work/leaf.pem" "$work/ca.pem" >"$work/chain.pem"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_shoal() {
	local port=$1
	echo "building shoal ..."
	go build -o "$work/shoal" ./cmd/shoal
	mkdir -p "$work/www"
	echo "<!doctype html><title>testssl</title><p>hello" >"$work/www/index.html"
	cat >"$work/config.toml" <<-EOF
		[server]
		http = ""
		https = "127.0.0.1:$port"
		admin = ""

		[log]
		access = "off"

		[tls]
		cert = "chain.pem"
		key = "leaf.key"
		hsts = "max-age=31536000; includeSubDomains"

		[[site]]
		root = "www"
	EOF
	"$work/shoal" -config "$work/config.toml" >"$work/shoal.log" 2>&1 &
	shoal_pid=$!
	# Poll until the listener answers (at most 20 s).
	for _ in $(seq 1 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		if ! kill -0 "$shoal_pid" 2>/dev/null; then break; fi
		sleep 0.1
	done
	echo "testssl.sh: shoal did not open its https listener on 127.0.0.1:$port; its log:" >&2
	cat "$work/shoal.log" >&2
	exit 2
}

if [[ -z $target ]]; then
	make_certs
	ca="$work/ca.pem"
	port=$(free_port)
	start_shoal "$port"
	target="localhost:$port"
	ip=127.0.0.1
else
	[[ -n $ca ]] || { echo "testssl.sh: -t needs -c CA.pem (the CA that signed the server's certificate)" >&2; exit 2; }
	ip=$(getent ahostsv4 "${target%:*}" | awk '{print $1; exit}')
fi

echo "running testssl against https://$target (ip $ip); this takes a few minutes ..."
# testssl's exit status counts problems in its own way; the JSON decides.
testssl --quiet --color 0 --warnings batch --add-ca "$ca" --ip "$ip" \
	--jsonfile "$work/testssl.json" --logfile "$work/testssl.log" "https://$target" >/dev/null 2>&1 || true

if ! jq -e 'map(select(.id == "TLS1_2" or .id == "TLS1_3")) | length > 0' "$work/testssl.json" >/dev/null 2>&1; then
	echo "testssl.sh: testssl produced no protocol results; its log:" >&2
	cat "$work/testssl.log" >&2 || true
	exit 2
fi

echo
echo "== severities"
jq -r 'group_by(.severity) | map("\(.[0].severity)\t\(length)") | .[]' "$work/testssl.json"
echo
echo "== key findings"
jq -r '.[] | select(.id | test("^(SSLv2|SSLv3|TLS1|TLS1_1|TLS1_2|TLS1_3|ALPN|HSTS|FS|cipher_order|cipherlist_.*|TLS_session_ticket|secure_renego|heartbleed|CCS|ticketbleed|ROBOT|CRIME_TLS|BREACH|POODLE_SSL|fallback_SCSV|SWEET32|FREAK|DROWN|LOGJAM|BEAST|LUCKY13|RC4)$")) | "\(.severity)\t\(.id)\t\(.finding)"' "$work/testssl.json"
echo
bad=$(jq -r '.[] | select(.severity == "HIGH" or .severity == "CRITICAL") | "\(.severity)\t\(.id)\t\(.finding)"' "$work/testssl.json")
if [[ -n $bad ]]; then
	echo "== FAIL: HIGH/CRITICAL findings"
	echo "$bad"
	exit 1
fi
echo "== OK: no HIGH or CRITICAL finding"
