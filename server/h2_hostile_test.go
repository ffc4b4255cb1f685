package server_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Client writes HTTP/2 frames by hand to a node's HTTPS listener.
type h2Client struct {
	t  *testing.T
	c  *tls.Conn
	fr *http2.Framer
}

func dialH2(t *testing.T, addr string, settings ...http2.Setting) *h2Client {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	hc := &h2Client{t: t, c: c, fr: http2.NewFramer(c, c)}
	hc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	hc.fr.WriteSettings(settings...)
	return hc
}

// block encodes header fields, "name", "value" by turns.
func block(kv ...string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for i := 0; i < len(kv); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return b.Bytes()
}

// req is a request's header block for path with more fields.
func req(method, path string, kv ...string) []byte {
	return block(append([]string{":method", method, ":scheme", "https", ":authority", "localhost", ":path", path}, kv...)...)
}

// send writes all that frames writes in one write.
func (hc *h2Client) send(frames func(fr *http2.Framer)) error {
	var b bytes.Buffer
	frames(http2.NewFramer(&b, nil))
	_, err := hc.c.Write(b.Bytes())
	return err
}

// outcome is how the node answered stream 1 (or the connection): "200",
// "RST PROTOCOL_ERROR", "GOAWAY ENHANCE_YOUR_CALM", "closed".
func (hc *h2Client) outcome(id uint32) string {
	status := ""
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			if status != "" {
				return status + " cut"
			}
			return "closed"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				hc.fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeNo || status == "" {
				return "GOAWAY " + f.ErrCode.String()
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return "RST " + f.ErrCode.String()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				if s := f.PseudoValue("status"); s != "" && s[0] != '1' {
					status = s
				}
				if f.StreamEnded() {
					return status
				}
			}
		case *http2.DataFrame:
			if f.StreamID == id && f.StreamEnded() {
				return status
			}
		}
	}
}

// TestH2Hostile: frames a hostile client sends to a node's HTTPS
// listener, one case per line, on a cached static file (the fast path),
// a large file, a CGI script and a template page, and how the node must
// answer: a status, a reset of the stream, or the end of the connection.
func TestH2Hostile(t *testing.T) {
	dir := newSiteDir(t)
	www := filepath.Join(dir, "www")
	os.WriteFile(filepath.Join(www, "page.tmpl"), []byte(`<p>{{query "q"}}</p>`), 0o644)
	cgiDir := filepath.Join(dir, "cgi-bin")
	os.Mkdir(cgiDir, 0o755)
	os.WriteFile(filepath.Join(cgiDir, "cat.sh"), []byte("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\ncat\n"), 0o755)
	tn := startNodeIn(t, dir, `https = "127.0.0.1:0"
[tls]
self_signed = true
[[site]]
root = "www"
[[site.cgi]]
prefix = "/cgi-bin/"
dir = "cgi-bin"
`)
	addr := tn.node.Addrs()["https"]
	get := func(path string, kv ...string) func(fr *http2.Framer) {
		return func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("GET", path, kv...), EndStream: true, EndHeaders: true})
		}
	}
	long := strings.Repeat("v", 4000)
	for _, tc := range []struct {
		name   string
		frames func(fr *http2.Framer)
		want   string
	}{
		{"cached file", get("/index.html"), "200"},
		{"HEAD of a cached file", func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("HEAD", "/index.html"), EndStream: true, EndHeaders: true})
		}, "200"},
		{"template page", get("/page?q=1"), "200"},
		{"CGI", get("/cgi-bin/cat.sh"), "200"},
		{"dot-dot path", get("/../../../etc/passwd"), "400"},
		{"encoded dot-dot path", get("/%2e%2e/%2e%2e/etc/passwd"), "400"},
		{"a frame over the frame size", func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("GET", "/", "x-big", strings.Repeat("~", 20000)), EndStream: true, EndHeaders: true})
		}, "GOAWAY FRAME_SIZE_ERROR"},
		{"asterisk path on GET", get("*"), "RST PROTOCOL_ERROR"},
		{"absolute-form path", get("https://localhost/index.html"), "RST PROTOCOL_ERROR"},
		{"uppercase field name", get("/index.html", "X-Upper", "1"), "RST PROTOCOL_ERROR"},
		{"connection-specific field", get("/index.html", "connection", "close"), "RST PROTOCOL_ERROR"},
		{"transfer-encoding", get("/index.html", "transfer-encoding", "chunked"), "RST PROTOCOL_ERROR"},
		{"TE other than trailers", get("/index.html", "te", "gzip"), "RST PROTOCOL_ERROR"},
		{"header list too large", func(fr *http2.Framer) {
			var kv []string
			// Just over max_header_bytes (64 KiB), in a last frame small
			// enough that the framer decodes it rather than ending the
			// connection ('~' is sent as is: encoded and decoded sizes
			// agree).
			for i := range 16 {
				kv = append(kv, "x-"+strings.Repeat("a", i+1), strings.Repeat("~", 4000))
			}
			kv = append(kv, "x-last", strings.Repeat("~", 1500))
			blk := req("GET", "/index.html", kv...)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:16000], EndStream: true})
			for blk = blk[16000:]; len(blk) > 16000; blk = blk[16000:] {
				fr.WriteContinuation(1, false, blk[:16000])
			}
			fr.WriteContinuation(1, true, blk)
		}, "431"},
		{"HEADERS on an even stream", func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, BlockFragment: req("GET", "/"), EndStream: true, EndHeaders: true})
		}, "GOAWAY PROTOCOL_ERROR"},
		{"DATA on an idle stream", func(fr *http2.Framer) { fr.WriteData(1, true, []byte("x")) }, "GOAWAY PROTOCOL_ERROR"},
		{"CGI body longer than Content-Length", func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("POST", "/cgi-bin/cat.sh", "content-length", "2"), EndHeaders: true})
			fr.WriteData(1, true, []byte("four"))
		}, "RST PROTOCOL_ERROR"},
		{"DATA after the client's reset", func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("POST", "/cgi-bin/cat.sh"), EndHeaders: true})
			fr.WriteRSTStream(1, http2.ErrCodeCancel)
			fr.WriteData(1, true, []byte("late"))
		}, "RST STREAM_CLOSED"},
		{"HEADERS after the client's reset", func(fr *http2.Framer) {
			// A script that reads its body: nothing can answer stream 1
			// before the reset (a page answers a POST without reading it).
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("POST", "/cgi-bin/cat.sh"), EndHeaders: true})
			fr.WriteRSTStream(1, http2.ErrCodeCancel)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("GET", "/page"), EndStream: true, EndHeaders: true})
		}, "RST STREAM_CLOSED"},
		{"connection window overflow", func(fr *http2.Framer) { fr.WriteWindowUpdate(0, 1<<31-1) }, "GOAWAY FLOW_CONTROL_ERROR"},
		{"stream window overflow", func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("GET", "/big.bin"), EndHeaders: true})
			fr.WriteWindowUpdate(1, 1<<31-1)
			fr.WriteWindowUpdate(1, 1<<31-1)
		}, "RST FLOW_CONTROL_ERROR"},
		{"HPACK garbage", func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndStream: true, EndHeaders: true})
		}, "GOAWAY COMPRESSION_ERROR"},
		{"PUSH_PROMISE from a client", func(fr *http2.Framer) {
			fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: req("GET", "/"), EndHeaders: true})
		}, "GOAWAY PROTOCOL_ERROR"},
		{"rapid reset", func(fr *http2.Framer) {
			blk := req("GET", "/cgi-bin/cat.sh")
			for i := range uint32(3000) {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 3, BlockFragment: blk, EndHeaders: true})
				fr.WriteRSTStream(2*i+3, http2.ErrCodeCancel)
			}
		}, "GOAWAY ENHANCE_YOUR_CALM"},
		{"PING flood", func(fr *http2.Framer) {
			for i := range 3000 {
				fr.WritePing(false, [8]byte{byte(i)})
			}
		}, "GOAWAY ENHANCE_YOUR_CALM"},
		{"SETTINGS flood", func(fr *http2.Framer) {
			for range 3000 {
				fr.WriteSettings()
			}
		}, "GOAWAY ENHANCE_YOUR_CALM"},
		{"header list far too large", func(fr *http2.Framer) {
			var kv []string
			for i := range 400 { // 1.6 MB: not worth decoding
				kv = append(kv, "x-"+strings.Repeat("a", i%20+1)+string(rune('a'+i%26)), long)
			}
			blk := req("GET", "/index.html", kv...)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:16000], EndStream: true})
			for blk = blk[16000:]; len(blk) > 16000; blk = blk[16000:] {
				fr.WriteContinuation(1, false, blk[:16000])
			}
			fr.WriteContinuation(1, true, blk)
		}, "GOAWAY PROTOCOL_ERROR"},
		{"CONTINUATION flood", func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req("GET", "/"), EndStream: true})
			junk := block("x-junk", strings.Repeat("j", 8000))
			for range 200 {
				fr.WriteContinuation(1, false, junk)
			}
		}, "GOAWAY PROTOCOL_ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := dialH2(t, addr)
			go hc.send(tc.frames) // a flood may be cut short by the node's GOAWAY
			if got := hc.outcome(1); got != tc.want {
				t.Errorf("%s, want %s", got, tc.want)
			}
		})
	}
}

// openFiles counts this process's file descriptors (the node runs in it).
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestH2OneConnectionBounded: what one HTTP/2 connection can hold of a
// node is bounded. With its window shut and 100 streams on a large file
// it pins at most 32 open files (the rest are refused), and it is closed
// with GOAWAY once the window stays shut past send_timeout, which frees
// them all. A client that only sends PINGs is closed after idle_timeout.
func TestH2OneConnectionBounded(t *testing.T) {
	tn := startNode(t, `https = "127.0.0.1:0"
send_timeout = "1s"
idle_timeout = "1s"
[tls]
self_signed = true
`)
	addr := tn.node.Addrs()["https"]
	t.Run("shut window", func(t *testing.T) {
		before := openFiles(t)
		hc := dialH2(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		blk := req("GET", "/big.bin")
		hc.send(func(fr *http2.Framer) {
			for i := range uint32(100) {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 1, BlockFragment: blk, EndStream: true, EndHeaders: true})
			}
		})
		refused, most := 0, 0
		start := time.Now()
		for {
			f, err := hc.fr.ReadFrame()
			if err != nil {
				break // closed after the GOAWAY
			}
			most = max(most, openFiles(t)-before)
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					hc.fr.WriteSettingsAck()
				}
			case *http2.RSTStreamFrame:
				if f.ErrCode == http2.ErrCodeRefusedStream {
					refused++
				}
			case *http2.GoAwayFrame:
				if waited := time.Since(start); waited > 5*time.Second {
					t.Errorf("GOAWAY after %v, send_timeout is 1s", waited)
				}
			}
		}
		if refused < 100-32 {
			t.Errorf("%d of 100 streams refused on a shut window, want at least 68", refused)
		}
		if most > 32+8 {
			t.Errorf("%d more descriptors open while the window was shut, want at most 32 and a few", most)
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("the connection with a shut window was not closed")
		}
		waitFor(t, 5*time.Second, "descriptors freed", func() bool { return openFiles(t) <= before+2 })
	})
	t.Run("PINGs only", func(t *testing.T) {
		hc := dialH2(t, addr)
		start := time.Now()
		for i := 0; ; i++ {
			hc.fr.WritePing(false, [8]byte{byte(i)})
			if got := hc.untilPingAck(); got != "" {
				break // GOAWAY or closed
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("PINGs kept the connection %v with idle_timeout 1s", time.Since(start))
			}
			time.Sleep(100 * time.Millisecond) // activity, not synchronisation
		}
	})
}

// untilPingAck reads until a PING ack (""), a GOAWAY or the end.
func (hc *h2Client) untilPingAck() string {
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			return "closed"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				hc.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if f.IsAck() {
				return ""
			}
		case *http2.GoAwayFrame:
			return "GOAWAY"
		}
	}
}

// waitFor polls cond until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: not %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
