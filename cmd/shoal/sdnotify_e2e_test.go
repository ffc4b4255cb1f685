package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2ESystemdNotify runs the binary as systemd would for Type=notify:
// READY=1 once it serves, RELOADING=1 (with MONOTONIC_USEC) then READY=1
// around a SIGHUP, STOPPING=1 on SIGTERM, then exit 0.
func TestE2ESystemdNotify(t *testing.T) {
	dir := siteDir(t, e2eConfig)
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	next := func(what string) string {
		t.Helper()
		buf := make([]byte, 1024)
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		return string(buf[:n])
	}

	cmd := exec.Command(shoalBin, "serve", "-config", "config.toml", "-http", "127.0.0.1:0", "-admin", "")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("shoal stderr:\n%s", stderr.String())
		}
	}()

	if got := next("READY=1"); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	if got := next("RELOADING=1"); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("on SIGHUP: %q, want RELOADING=1 and MONOTONIC_USEC", got)
	}
	if got := next("READY=1 after the reload"); got != "READY=1" {
		t.Errorf("after the reload: %q, want READY=1", got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if got := next("STOPPING=1"); got != "STOPPING=1" {
		t.Errorf("on SIGTERM: %q, want STOPPING=1", got)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20 s of SIGTERM")
	}
}
