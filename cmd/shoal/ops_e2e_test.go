package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EReopenLogsSIGUSR1: logrotate renames the access log and sends
// SIGUSR1; shoal then writes to a new file under the configured name (as
// `nginx -s reopen`), and the renamed file keeps only the older lines.
func TestE2EReopenLogsSIGUSR1(t *testing.T) {
	dir := siteDir(t, e2eConfig+"\n[log]\naccess = \"access.log\"\n")
	p := startShoal(t, dir)
	logPath := filepath.Join(dir, "access.log")
	read := func(path string) string {
		b, _ := os.ReadFile(path)
		return string(b)
	}
	p.get("/index.html?before")
	pollFor(t, "the first line in access.log", func() bool { return strings.Contains(read(logPath), "/index.html?before") })

	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGUSR1)
	// Each poll sends a new request: the first ones may still reach the
	// renamed file if they beat the signal.
	i := 0
	pollFor(t, "a request's line in the new access.log", func() bool {
		i++
		p.get(fmt.Sprintf("/index.html?after-%d", i))
		return strings.Contains(read(logPath), "?after-")
	})
	if strings.Contains(read(logPath), "?before") {
		t.Errorf("the new access.log holds lines from before the rotation:\n%s", read(logPath))
	}
	if !strings.Contains(read(logPath+".1"), "?before") {
		t.Errorf("the rotated file lost its lines:\n%s", read(logPath+".1"))
	}
	p.signal(syscall.SIGTERM)
	if code := p.waitExit(20 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGUSR1 and SIGTERM, want 0", code)
	}
}
