package main

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// errorLogWriter puts the error log (slog on stderr) behind a bounded
// queue and one writer goroutine. slog writes under a lock: with stderr a
// pipe that stalled (journald, a container log driver), the first request
// that logged would block, and every other one behind it on the lock.
// Past the queue, lines are dropped, and a line saying how many is
// written once stderr moves again.
type errorLogWriter struct {
	out     io.Writer
	queue   chan []byte
	dropped atomic.Int64
	closed  atomic.Bool
	stop    chan struct{}
	done    chan struct{}
}

// errorLogQueue is how many lines may wait for a slow stderr.
const errorLogQueue = 4096

func newErrorLogWriter(out io.Writer) *errorLogWriter {
	w := &errorLogWriter{out: out, queue: make(chan []byte, errorLogQueue),
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// Write queues one log record; it never waits. After Close it writes
// directly, so the last words of a stopping node are not lost.
func (w *errorLogWriter) Write(p []byte) (int, error) {
	if w.closed.Load() {
		return w.out.Write(p)
	}
	select {
	case w.queue <- append([]byte(nil), p...):
	default:
		w.dropped.Add(1)
	}
	return len(p), nil
}

func (w *errorLogWriter) loop() {
	defer close(w.done)
	for {
		select {
		case line := <-w.queue:
			w.write(line)
		case <-w.stop:
			for {
				select {
				case line := <-w.queue:
					w.write(line)
				default:
					return
				}
			}
		}
	}
}

func (w *errorLogWriter) write(line []byte) {
	if n := w.dropped.Swap(0); n > 0 {
		fmt.Fprintf(w.out, "time=%s level=WARN msg=\"error log lines dropped: stderr did not keep up\" count=%d\n",
			time.Now().Format("2006-01-02T15:04:05.000Z07:00"), n)
	}
	w.out.Write(line)
}

// Close writes what is queued, waiting at most within for a stalled
// stderr; later writes go straight to it.
func (w *errorLogWriter) Close(within time.Duration) {
	if w.closed.Swap(true) {
		return
	}
	close(w.stop)
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
	}
}
