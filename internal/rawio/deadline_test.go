package rawio

import (
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// TestWithinKeepsACloseDeadline: within moves a deadline only when the
// one set is not between d and d + d/16 from now, and then to the top
// of that window. d is an hour, so the clock's advance during the test
// cannot move a case across an edge.
func TestWithinKeepsACloseDeadline(t *testing.T) {
	const d = time.Hour
	dl := &deadlines{born: time.Now().Add(-time.Minute)}
	now := func() int64 { return int64(time.Since(dl.born)) }
	cases := []struct {
		name string
		cur  func() int64
		keep bool
	}{
		{"none set", func() int64 { return 0 }, false},
		{"long past", func() int64 { return -1 }, false},
		{"sooner than d", func() int64 { return now() + int64(d) - int64(time.Minute) }, false},
		{"just over d", func() int64 { return now() + int64(d) + int64(time.Minute) }, true},
		{"top of the window", func() int64 { return now() + int64(d) + int64(d/slackDiv) - int64(time.Second) }, true},
		{"past the window", func() int64 { return now() + int64(d) + int64(d/8) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var at atomic.Int64
			cur := tc.cur()
			at.Store(cur)
			before := now()
			next := dl.within(&at, d)
			if tc.keep {
				if next != 0 || at.Load() != cur {
					t.Fatalf("moved a deadline within the window: %d -> %d", cur, at.Load())
				}
				return
			}
			if next == 0 || at.Load() != next {
				t.Fatalf("kept %d; want a new deadline (next %d, stored %d)", cur, next, at.Load())
			}
			if lo, hi := before+int64(d), now()+int64(d)+int64(d/slackDiv); next < lo || next > hi {
				t.Fatalf("new deadline %d outside [%d, %d]", next, lo, hi)
			}
		})
	}
}

// TestReadWithin: the deadline ReadWithin sets holds (a silent peer
// times the read out, never before d), and one set any other way counts:
// a deadline in the past or none at all is replaced by the next
// ReadWithin rather than kept.
func TestReadWithin(t *testing.T) {
	c, peer := pair(t)
	const d = 150 * time.Millisecond
	buf := make([]byte, 8)

	// timedOutAfter reads until the deadline; the time is counted from
	// start, taken before the deadline was set.
	timedOutAfter := func(start time.Time) time.Duration {
		t.Helper()
		_, err := c.Read(buf)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %v; want a deadline error", err)
		}
		return time.Since(start)
	}

	start := time.Now()
	c.ReadWithin(d)
	if el := timedOutAfter(start); el < d || el > 5*time.Second {
		t.Fatalf("timed out after %v; want d (%v) to d + d/16", el, d)
	}

	// The passed deadline is not "close enough": the next one is set.
	start = time.Now()
	c.ReadWithin(d)
	if el := timedOutAfter(start); el < d {
		t.Fatalf("second ReadWithin kept a passed deadline: timed out after %v", el)
	}

	// SetReadDeadline in the past, then ReadWithin: armed afresh.
	c.ReadWithin(time.Hour)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	c.ReadWithin(d)
	go peer.Write([]byte("x"))
	if n, err := c.Read(buf); n != 1 || err != nil {
		t.Fatalf("Read after re-arming = %d, %v; want the byte", n, err)
	}

	// No deadline (zero), then ReadWithin: a deadline again.
	c.SetDeadline(time.Time{})
	start = time.Now()
	c.ReadWithin(d)
	if el := timedOutAfter(start); el < d || el > 5*time.Second {
		t.Fatalf("ReadWithin after clearing: timed out after %v", el)
	}
}

// TestWriteWithin: a write the peer does not take times out no sooner
// than d, by the deadline WriteWithin set.
func TestWriteWithin(t *testing.T) {
	c, _ := pair(t)
	c.SetWriteBuffer(4 << 10)
	const d = 150 * time.Millisecond
	big := make([]byte, 64<<20) // more than loopback's buffers take
	start := time.Now()
	c.WriteWithin(d)
	_, err := c.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write = %v; want a deadline error", err)
	}
	if el := time.Since(start); el < d || el > 5*time.Second {
		t.Fatalf("timed out after %v; want about %v", el, d)
	}
}
