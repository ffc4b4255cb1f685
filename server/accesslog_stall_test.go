package server_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"shoal/server"
)

// TestAccessLogStalledDestination: the access log goes to a FIFO that
// nobody reads (a stalled stdout pipe, as journald or a container log
// driver can leave it). Requests still answer within a deadline, and the
// lines that find no room are counted in shoal_access_log_dropped_total.
func TestAccessLogStalledDestination(t *testing.T) {
	dir := newSiteDir(t)
	fifo := filepath.Join(dir, "access.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// Held open for reading and writing but never read: shoal's open for
	// writing finds a reader and its writes stall once the pipe is full.
	hold, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Close() })
	cfg := fmt.Sprintf("[log]\naccess = %q\n\n[server]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\ndrain_delay = \"0s\"\n", fifo)
	if err := os.WriteFile(filepath.Join(dir, "x.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	node := server.RunNode(t, filepath.Join(dir, "x.toml"))
	url := "http://" + node.Addrs()["http"] + "/index.html?q=" + strings.Repeat("x", 8000)
	client := &http.Client{Timeout: 5 * time.Second}
	// 400 lines of 8 KB: more than the pipe, the writer's buffer and the
	// log's 1 MiB queue hold together.
	deadline := time.Now().Add(30 * time.Second)
	for i := range 400 {
		resp, err := client.Get(url)
		if err != nil {
			var ue *neturl.Error
			if errors.As(err, &ue) {
				err = ue.Err // without the 8 KB URL
			}
			t.Fatalf("request %d: %v (the stalled log blocked serving)", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("400 requests took over 30s: logging blocks serving")
		}
	}
	if n := droppedLines(t, node.Addrs()["admin"]); n <= 0 {
		t.Fatalf("shoal_access_log_dropped_total = %v, want > 0", n)
	}
}

// droppedLines reads shoal_access_log_dropped_total from /metrics.
func droppedLines(t *testing.T, admin string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "shoal_access_log_dropped_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no shoal_access_log_dropped_total in /metrics")
	return 0
}
