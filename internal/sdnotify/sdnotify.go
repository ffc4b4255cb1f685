// Package sdnotify tells systemd what a Type=notify service is doing
// (sd_notify(3)): READY=1 once it serves, RELOADING=1 while it reloads,
// STOPPING=1 when it drains. It owns only the datagram protocol; when
// $NOTIFY_SOCKET is unset (not under systemd) every call does nothing.
package sdnotify

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"golang.org/x/sys/unix"
)

// Notifier sends state changes to the socket systemd named. A nil
// *Notifier is valid and sends nothing.
type Notifier struct {
	addr *net.UnixAddr
	log  *slog.Logger
}

// New returns a Notifier for socket (the value of $NOTIFY_SOCKET: a path,
// or "@name" for Linux's abstract namespace), or nil when socket is "".
// Failures to send are logged to log, since systemd then only sees a
// start or reload that never finishes.
func New(socket string, log *slog.Logger) *Notifier {
	if socket == "" {
		return nil
	}
	if log == nil {
		log = slog.Default()
	}
	// Go maps a leading '@' to the abstract namespace's NUL byte itself.
	return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}, log: log}
}

// Send writes one notification: newline-separated VAR=value assignments,
// in one datagram as systemd requires.
func (n *Notifier) Send(state string) error {
	if n == nil {
		return nil
	}
	if state == "" || strings.IndexByte(state, 0) >= 0 {
		return errors.New("sdnotify: empty state or NUL byte")
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Ready says the service serves: after start, and again after a reload.
func (n *Notifier) Ready() { n.logged(n.Send("READY=1")) }

// Reloading says a reload began. MONOTONIC_USEC is required by
// Type=notify-reload and harmless for Type=notify.
func (n *Notifier) Reloading() {
	if n == nil {
		return
	}
	usec, err := monotonicUsec()
	if err != nil {
		n.logged(err)
		return
	}
	n.logged(n.Send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", usec)))
}

// Stopping says the service is draining and will exit.
func (n *Notifier) Stopping() { n.logged(n.Send("STOPPING=1")) }

func (n *Notifier) logged(err error) {
	if err != nil && n != nil {
		n.log.Warn("systemd notification failed", "err", err)
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares MONOTONIC_USEC with (Go's time package does not expose it).
func monotonicUsec() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("sdnotify: clock_gettime: %w", err)
	}
	return ts.Nano() / 1000, nil
}
