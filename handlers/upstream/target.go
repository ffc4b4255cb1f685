package upstream

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Endpoint is one parsed target address.
type Endpoint struct {
	// Raw is the target as configured; it names the target in Snapshot,
	// MarkDown and SetRemoteInflight.
	Raw string
	// FastCGI is set for fastcgi:// and fastcgi+unix: targets.
	FastCGI bool
	// TLS is set for https:// targets.
	TLS bool
	// Network is "tcp" or "unix"; Address is host:port or a socket path.
	Network, Address string
}

// errTarget: a target address that is none of the forms SPEC lists.
var errTarget = errors.New(`want "http://host:port", "https://host:port", "unix:/path.sock", "fastcgi://host:port" or "fastcgi+unix:/path.sock"`)

// ParseTarget parses one entry of targets.
func ParseTarget(s string) (Endpoint, error) {
	e := Endpoint{Raw: s}
	switch {
	case strings.HasPrefix(s, "unix:"):
		e.Network, e.Address = "unix", strings.TrimPrefix(s, "unix:")
		return e, checkSocket(e.Address)
	case strings.HasPrefix(s, "fastcgi+unix:"):
		e.FastCGI, e.Network, e.Address = true, "unix", strings.TrimPrefix(s, "fastcgi+unix:")
		return e, checkSocket(e.Address)
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return e, fmt.Errorf("target %q: %w", s, errTarget)
	}
	port := u.Port()
	switch u.Scheme {
	case "http":
		port = cmpOr(port, "80")
	case "https":
		e.TLS, port = true, cmpOr(port, "443")
	case "fastcgi":
		e.FastCGI = true
		if port == "" {
			return e, fmt.Errorf("target %q: a fastcgi target needs a port", s)
		}
	default:
		return e, fmt.Errorf("target %q: %w", s, errTarget)
	}
	if u.Hostname() == "" {
		return e, fmt.Errorf("target %q: no host", s)
	}
	e.Network, e.Address = "tcp", net.JoinHostPort(u.Hostname(), port)
	return e, nil
}

func checkSocket(path string) error {
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("socket %q: %w", path, errors.New("must be an absolute path"))
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// target is one application server with its counters. Counters are
// atomics: every request reads or moves them.
type target struct {
	Endpoint
	// key is a hash of Raw, mixed with the client's for ip_hash.
	key uint64

	inflight atomic.Int64 // requests this node has at the target now
	remote   atomic.Int64 // requests other nodes report in flight to it
	failures atomic.Int64 // failed connects and timeouts since start
	// downUntil (unix nanoseconds) skips the target after a failure, here
	// or on another node; 0: not skipped.
	downUntil atomic.Int64
	// unhealthy is the last active check's verdict (false until one fails).
	unhealthy atomic.Bool

	http *httpTarget    // set for HTTP targets
	fcgi *fastcgiTarget // set for FastCGI targets
}

func newTarget(e Endpoint) *target {
	h := fnv.New64a()
	h.Write([]byte(e.Raw))
	return &target{Endpoint: e, key: h.Sum64()}
}

// available is the one predicate every policy selects among: the last
// active check passed and no failure is being sat out.
func (t *target) available(now int64) bool {
	return !t.unhealthy.Load() && now >= t.downUntil.Load()
}

// load is what least_loaded compares: the whole cluster's requests in
// flight to the target.
func (t *target) load() int64 { return t.inflight.Load() + t.remote.Load() }

// skipUntil pushes downUntil to until, never back.
func (t *target) skipUntil(until time.Time) {
	n := until.UnixNano()
	for {
		cur := t.downUntil.Load()
		if cur >= n || t.downUntil.CompareAndSwap(cur, n) {
			return
		}
	}
}
