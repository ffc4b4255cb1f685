package server

import (
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Scanners and broken clients can cause thousands of failed handshakes a
// second; net/http logs each one. handshakeLogBurst lines per
// handshakeLogWindow are kept, the rest counted and reported in one line.
const (
	handshakeLogBurst  = 10
	handshakeLogWindow = time.Minute
)

// newServerErrorLog returns a *log.Logger for http.Server.ErrorLog that
// forwards to l: "TLS handshake error" lines at Info and rate-limited,
// everything else at Error unchanged.
func newServerErrorLog(l *slog.Logger) *log.Logger {
	if l == nil {
		l = slog.Default()
	}
	return log.New(&errorLogWriter{log: l, now: time.Now}, "", 0)
}

// errorLogWriter receives one line per Write from log.Logger.
type errorLogWriter struct {
	log *slog.Logger
	now func() time.Time

	// mu guards windowStart, inWindow and suppressed.
	mu          sync.Mutex
	windowStart time.Time
	inWindow    int
	suppressed  int
}

func (w *errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	if !strings.Contains(msg, "TLS handshake error") {
		w.log.Error(msg)
		return len(p), nil
	}
	logIt, dropped := w.admit()
	if dropped > 0 {
		w.log.Info("http: TLS handshake errors suppressed", "count", dropped, "window", handshakeLogWindow.String())
	}
	if logIt {
		w.log.Info(msg)
	}
	return len(p), nil
}

// admit decides whether this handshake error is logged and returns how many
// were dropped in the window that just ended.
func (w *errorLogWriter) admit() (logIt bool, dropped int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if now.Sub(w.windowStart) >= handshakeLogWindow {
		dropped = w.suppressed
		w.windowStart, w.inWindow, w.suppressed = now, 0, 0
	}
	if w.inWindow < handshakeLogBurst {
		w.inWindow++
		return true, dropped
	}
	w.suppressed++
	return false, dropped
}
