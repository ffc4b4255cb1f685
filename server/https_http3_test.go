package server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// abandoningClient is an HTTP/3 client whose UDP socket can be closed
// under it: the server then never hears a CONNECTION_CLOSE, as from a
// client that lost its network or was killed.
type abandoningClient struct {
	*http.Client
	tr   *http3.Transport
	sock *net.UDPConn
}

func newAbandoningClient(t *testing.T, f *sniFixture) *abandoningClient {
	t.Helper()
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := &abandoningClient{sock: sock}
	c.tr = &http3.Transport{
		TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: f.ca.pool},
		Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, err
			}
			return quic.DialEarly(ctx, sock, ua, tlsCfg, cfg)
		},
	}
	c.Client = &http.Client{Transport: c.tr, Timeout: 10 * time.Second}
	t.Cleanup(func() { sock.Close() })
	return c
}

// TestHTTP3ShutdownAbandonedClient: a client that went away without
// closing its connection does not hold SIGTERM for the whole grace; a
// request in flight at shutdown still completes.
func TestHTTP3ShutdownAbandonedClient(t *testing.T) {
	f := newSNIFixture(t)
	m := newManager(t, f.tls, f.sites)
	release := make(chan struct{})
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	h3, err := startHTTP3(http3Options{Addr: "127.0.0.1:0", TLS: m.TLSConfig(), Handler: page, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + h3.Addr().String()

	gone := newAbandoningClient(t, f)
	resp, err := gone.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	gone.sock.Close() // gone without a word

	busy := newAbandoningClient(t, f)
	slow := make(chan error, 1)
	go func() {
		resp, err := busy.Get(url + "/slow")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		slow <- err
	}()
	for h3.inflight.Load() == 0 {
		select {
		case err := <-slow:
			t.Fatalf("slow request ended early: %v", err)
		case <-time.After(5 * time.Millisecond): // poll until the request is in
		}
	}

	grace := 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- h3.Shutdown(ctx) }()
	time.AfterFunc(300*time.Millisecond, func() { close(release) })
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(grace + 5*time.Second):
		t.Fatal("shutdown never returned")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %v with an abandoned client (grace %v); want seconds at most", took, grace)
	}
	if err := <-slow; err != nil {
		t.Errorf("request in flight at shutdown failed: %v", err)
	}
}
