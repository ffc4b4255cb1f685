package sdnotify

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens a unixgram socket as systemd does and returns its name for
// $NOTIFY_SOCKET and a function that reads the next datagram.
func listen(t *testing.T, name string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("reading a notification: %v", err)
		}
		return string(buf[:k])
	}
}

func TestNotifierStates(t *testing.T) {
	for _, tc := range []struct {
		kind string
		name string
	}{
		{"path", filepath.Join(t.TempDir(), "notify.sock")},
		{"abstract", fmt.Sprintf("@shoal-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			next := listen(t, tc.name)
			var logs bytes.Buffer
			n := New(tc.name, slog.New(slog.NewTextHandler(&logs, nil)))

			n.Ready()
			if got := next(); got != "READY=1" {
				t.Errorf("Ready sent %q", got)
			}
			var ts unix.Timespec
			unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
			before := ts.Nano() / 1000
			n.Reloading()
			got := next()
			lines := strings.Split(got, "\n")
			if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
				t.Fatalf("Reloading sent %q", got)
			}
			usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
			if err != nil || usec < before || usec > before+5_000_000 {
				t.Errorf("MONOTONIC_USEC=%d, want CLOCK_MONOTONIC near %d (%v)", usec, before, err)
			}
			n.Stopping()
			if got := next(); got != "STOPPING=1" {
				t.Errorf("Stopping sent %q", got)
			}
			if logs.Len() > 0 {
				t.Errorf("unexpected log: %s", logs.String())
			}
		})
	}
}

func TestNotifierOff(t *testing.T) {
	n := New("", nil)
	if n != nil {
		t.Fatal(`New("") must be nil: not under systemd`)
	}
	n.Ready() // a nil Notifier does nothing and does not panic
	n.Reloading()
	n.Stopping()
	if err := n.Send("READY=1"); err != nil {
		t.Fatal(err)
	}
}

func TestNotifierNoListener(t *testing.T) {
	var logs bytes.Buffer
	n := New(filepath.Join(t.TempDir(), "absent.sock"), slog.New(slog.NewTextHandler(&logs, nil)))
	if err := n.Send("READY=1"); err == nil {
		t.Fatal("sending to a missing socket must fail")
	}
	n.Ready()
	if !strings.Contains(logs.String(), "systemd notification failed") {
		t.Errorf("a failed notification must be logged, got %q", logs.String())
	}
	if err := n.Send("A=1\x00"); err == nil {
		t.Error("a NUL byte must be refused")
	}
}
