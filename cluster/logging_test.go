package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// countingHandler counts the records written at Info and above, and
// keeps their messages.
type countingHandler struct {
	mu    *sync.Mutex
	lines *[]string
	attrs string
}

func newCountingHandler() countingHandler {
	return countingHandler{mu: &sync.Mutex{}, lines: new([]string)}
}

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message + h.attrs)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s", a); return true })
	h.mu.Lock()
	*h.lines = append(*h.lines, b.String())
	h.mu.Unlock()
	return nil
}
func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		h.attrs += " " + a.String()
	}
	return h
}
func (h countingHandler) WithGroup(string) slog.Handler { return h }

func (h countingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(*h.lines)
}

func (h countingHandler) text() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(*h.lines, "\n")
}

// total is what the memberlist writer took in: written or suppressed.
func (w *mlWriter) total(written int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return written + w.suppressed
}

func TestGossipGarbageLogsBounded(t *testing.T) {
	h := newCountingHandler()
	n := startNode(t, "target", nil, func(o *Options) { o.Logger = slog.New(h) })
	start := h.count()
	addr := n.c.GossipAddr()

	// 4,000 junk datagrams from four sockets (four source ports), and 200
	// junk TCP connections: each used to write an ERROR line.
	var wg sync.WaitGroup
	for s := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("udp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			rnd := rand.New(rand.NewPCG(uint64(s), 1))
			buf := make([]byte, 64)
			for range 1000 {
				for i := range buf {
					buf[i] = byte(rnd.UintN(256))
				}
				conn.Write(buf[:1+rnd.IntN(len(buf))])
			}
		}()
	}
	for i := range 200 {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		fmt.Fprintf(conn, "%c junk %d\r\n", byte(i), i)
		conn.Close()
	}
	wg.Wait()
	eventually(t, 10*time.Second, "junk lines taken in", func() bool {
		return n.c.mlLog.total(h.count()-start) >= 500 // UDP may drop some
	})
	// Lines still in memberlist's queues could arrive later; a short
	// settle keeps the bound honest (a measurement, not synchronisation).
	time.Sleep(200 * time.Millisecond)
	written := h.count() - start
	if written > 2*logKindsPerSource {
		t.Fatalf("%d junk packets and connections wrote %d log lines, want at most %d:\n%s",
			4200, written, 2*logKindsPerSource, h.text())
	}
	t.Logf("%d lines written, %d suppressed", written, n.c.mlLog.total(0))

	// The window's end writes one summary with the count.
	n.c.mlLog.flush(time.Now().Add(logWindow))
	if !strings.Contains(h.text(), "memberlist log lines suppressed") {
		t.Errorf("no summary line:\n%s", h.text())
	}
}

func TestLogLimiter(t *testing.T) {
	h := newCountingHandler()
	w := newMLWriter(slog.New(h), time.Minute)
	t0 := time.Now()
	lines := []string{
		"[ERR] memberlist: Decrypt packet failed: cipher: message authentication failed from=10.0.0.1:5000",
		"[ERR] memberlist: Decrypt packet failed: cipher: message authentication failed from=10.0.0.1:5001",    // same kind, same host
		"[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=10.0.0.2:9", // other source
		"[WARN] memberlist: Got invalid checksum for UDP packet: 1, 2",
		"[WARN] memberlist: Got invalid checksum for UDP packet: 3, 4", // same kind, no source
		"[INFO] memberlist: Suspect n3 has failed, no acks received",
		"[INFO] memberlist: Suspect n4 has failed, no acks received", // another node: another line
	}
	var admitted []bool
	for _, l := range lines {
		_, text := parseMLLine(l)
		admitted = append(admitted, w.admit(text, t0))
	}
	want := []bool{true, false, true, true, false, true, true}
	for i := range want {
		if admitted[i] != want[i] {
			t.Errorf("line %d %q admitted=%v, want %v", i, lines[i], admitted[i], want[i])
		}
	}
	// One source varying the text gets logKindsPerSource lines a window.
	got := 0
	for i := range 100 {
		if w.admit(fmt.Sprintf("Received invalid msgType (%d) from=10.0.0.3:1", i), t0) {
			got++
		}
	}
	if got != logKindsPerSource {
		t.Errorf("one source varying the text: %d lines, want %d", got, logKindsPerSource)
	}
	// Spoofed sources: memory stays bounded.
	for i := range 5000 {
		w.admit(fmt.Sprintf("Decrypt packet failed: x from=10.%d.%d.1:1", i/256, i%256), t0)
	}
	if len(w.seen) > logMaxKeys || len(w.sources) > logMaxKeys {
		t.Errorf("limiter holds %d keys, %d sources", len(w.seen), len(w.sources))
	}
	// A new window writes the summary and lets each kind through again.
	if !w.admit("Decrypt packet failed: again from=10.0.0.1:7", t0.Add(time.Minute)) {
		t.Error("a new window did not admit the kind again")
	}
	if !strings.Contains(h.text(), "suppressed") {
		t.Errorf("no summary:\n%s", h.text())
	}
}

func TestStrangerJoinLogsBounded(t *testing.T) {
	h := newCountingHandler()
	n := startNode(t, "target", nil, func(o *Options) { o.Logger = slog.New(h) })
	memberlistLines := func() int { return strings.Count(h.text(), "component=memberlist") }
	stranger, err := tryStartNode(t, "stranger", "127.0.0.1:0", []string{n.c.GossipAddr()}, func(o *Options) {
		o.Secret = []byte("another secret, 32 bytes long!!!")
	})
	if err != nil {
		t.Fatal(err)
	}
	// The stranger retries with backoff while alone: wait for several
	// attempts, each of which used to log at the target.
	eventually(t, 10*time.Second, "stranger retried", func() bool { return stranger.c.joinFail.Load() >= 6 })
	if got := memberlistLines(); got > 3 {
		t.Errorf("%d join attempts by a stranger wrote %d memberlist lines at the target:\n%s",
			stranger.c.joinFail.Load(), got, h.text())
	}
}

func TestSuppressedLinesCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := InstallGoMetrics(reg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gometrics.NewGlobal(gometrics.DefaultConfig(""), &gometrics.BlackholeSink{}) })
	h := newCountingHandler()
	_, w := newMemberlistLogger(slog.New(h))
	for range 5 {
		w.Write([]byte("[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=192.0.2.7:4000\n"))
	}
	if h.count() != 1 {
		t.Errorf("%d lines written, want 1:\n%s", h.count(), h.text())
	}
	fams := scrapeText(t, reg)
	if v, ok := sample(fams["shoal_memberlist_log_suppressed_total"], nil); !ok || v != 4 {
		t.Errorf("shoal_memberlist_log_suppressed_total = %v (found %v); have %v", v, ok, keys(fams))
	}
}
