package server_test

import (
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestReloadMovesListeners: a reload that changes a listener's address
// opens the new one before closing the old; one that adds the admin
// listener opens it; one whose new address is taken changes nothing.
func TestReloadMovesListeners(t *testing.T) {
	tn := startNode(t, "")
	oldAddr := tn.addr
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	newAddr := l.Addr().String()

	// Taken address: refused, the old listener keeps serving.
	cfg := strings.Replace(baseConfig, `http = "127.0.0.1:0"`, `http = "`+newAddr+`"`, 1)
	if err := os.WriteFile(tn.path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tn.node.Reload(); err == nil {
		t.Fatal("reload onto a taken port succeeded")
	}
	if got := tn.node.Addrs()["http"]; got != oldAddr {
		t.Fatalf("http listener moved to %s after a refused reload", got)
	}
	if resp, err := http.Get("http://" + oldAddr + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("old listener after refused reload: %v %v", resp, err)
	}
	l.Close()

	// Free now: the listener moves and the admin listener appears.
	cfg = strings.Replace(cfg, `admin = ""`, `admin = "127.0.0.1:0"`, 1)
	if err := os.WriteFile(tn.path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tn.node.Reload(); err != nil {
		t.Fatal(err)
	}
	addrs := tn.node.Addrs()
	if addrs["http"] != newAddr {
		t.Fatalf("http listener at %s, want %s", addrs["http"], newAddr)
	}
	for _, u := range []string{"http://" + newAddr + "/", "http://" + addrs["admin"] + "/healthz"} {
		resp, err := http.Get(u)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", u, resp, err)
		}
		resp.Body.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", oldAddr, time.Second)
		if err != nil {
			break // the old address is closed
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("old address %s still accepts after the move", oldAddr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
