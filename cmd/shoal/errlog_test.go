package main

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestErrorLogNeverBlocks: with stderr a pipe nobody reads, writing the
// error log returns at once (lines past the queue are dropped and counted)
// and Close gives up after its bound.
func TestErrorLogNeverBlocks(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	w := newErrorLogWriter(pw)
	line := []byte("time=x level=ERROR msg=" + strings.Repeat("x", 1000) + "\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20000 { // 20 MB: far past the pipe and the queue
			w.Write(line)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writing the error log blocked on a stalled stderr")
	}
	if w.dropped.Load() == 0 {
		t.Error("no line counted as dropped")
	}
	start := time.Now()
	w.Close(200 * time.Millisecond)
	if time.Since(start) > 5*time.Second {
		t.Error("Close did not give up on a stalled stderr")
	}
}

// TestErrorLogReportsDrops: once stderr moves again, the lines come out
// that were queued and a line says how many were dropped.
func TestErrorLogReportsDrops(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	gate := make(chan struct{})
	w := newErrorLogWriter(writerFunc(func(p []byte) (int, error) {
		<-gate
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	}))
	for range errorLogQueue + 100 {
		w.Write([]byte("line\n"))
	}
	close(gate)
	w.Close(5 * time.Second)
	w.Write([]byte("after close\n"))
	mu.Lock()
	defer mu.Unlock()
	s := out.String()
	if !strings.Contains(s, `msg="error log lines dropped: stderr did not keep up" count=`) || !strings.HasSuffix(s, "after close\n") {
		t.Errorf("output lacks the drop count or the line after Close:\n%.300s ... %s", s, s[max(0, len(s)-200):])
	}
	if n := strings.Count(s, "line\n"); n != errorLogQueue && n != errorLogQueue+1 {
		t.Errorf("%d lines written, want the queue's %d (one more may be in the writer's hand)", n, errorLogQueue)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
