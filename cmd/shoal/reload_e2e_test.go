package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The reload test runs one shoal serving HTTP and HTTPS under a steady,
// bounded load while its config is reloaded 20 times, alternately by
// SIGHUP and by POST /api/reload on the admin listener. Every valid reload
// bumps a response header, replaces the TLS certificate (a new serial) and
// at two points adds a site; three invalid configs in between must be
// refused with the old config still serving. No request of the load may
// fail.

const reloadConfig = `[server]
drain_delay = "100ms"
shutdown_grace = "1s"

[log]
access = "off"

[tls]
cert = "cert.pem"
key = "key.pem"

[[site]]
hosts = ["a.test"]
root = "www"
headers = {X-Gen = "%d"}
`

const reloadIndex = "<h1>shoal e2e</h1>\n"

// reloadStep is one reload: valid ones bump the generation; invalid ones
// break the config in one way and must leave the old one serving.
type reloadStep struct {
	viaPOST bool
	invalid string // "", "unknown-key", "missing-root", "bad-cert"
}

func reloadPlan() []reloadStep {
	plan := make([]reloadStep, 20)
	for i := range plan {
		plan[i].viaPOST = i%2 == 1
	}
	plan[5].invalid = "unknown-key"   // POST
	plan[10].invalid = "missing-root" // SIGHUP
	plan[15].invalid = "bad-cert"     // POST
	plan[12].invalid = "unknown-key"  // SIGHUP
	return plan
}

// extraSites are added by the reloads at these generations.
var extraSites = []struct {
	host string
	gen  int
}{{"b.test", 3}, {"c.test", 8}}

type reloadRig struct {
	t                *testing.T
	dir              string
	p                *proc
	httpsAddr, admin string
	ca               *x509.Certificate
	caKey            *ecdsa.PrivateKey
	pool             *x509.CertPool
	gen              int   // the generation the node should serve
	serial           int64 // the serial of the certificate it should present
	httpC, httpsC    *http.Client
	served           atomic.Int64 // requests of the load answered so far
	// seen is the X-Gen the load last saw on each listener, over its
	// kept-alive connections: [0] http, [1] https.
	seen [2]atomic.Int64
}

func TestE2EReloadUnderLoad(t *testing.T) {
	rig := newReloadRig(t)

	stop := make(chan struct{})
	loadDone := make(chan loadResult, 1)
	go func() { loadDone <- rig.load(stop) }()
	// The load must be running before the first reload.
	pollFor(t, "the load running", func() bool { return rig.served.Load() > 0 })
	// Two slow downloads, one per listener, stay open through every reload
	// and past the moment the first old config is closed (shutdown_grace
	// + 1s after its reload).
	downloads := make(chan error, 2)
	for _, secure := range []bool{false, true} {
		go func() { downloads <- rig.slowDownload(secure, stop, 4*time.Second) }()
	}

	for i, step := range reloadPlan() {
		how := "SIGHUP"
		if step.viaPOST {
			how = "POST /api/reload"
		}
		t.Logf("reload %d via %s (invalid: %q)", i+1, how, step.invalid)
		before := rig.served.Load()
		if step.invalid != "" {
			rig.refused(step)
		} else {
			rig.valid(step)
		}
		// Every generation is served to the load for a while, so each
		// reload happens with requests in flight around it.
		pollFor(t, "the load to go on after the reload", func() bool { return rig.served.Load() >= before+20 })
	}

	close(stop)
	res := <-loadDone
	for range 2 {
		if err := <-downloads; err != nil {
			t.Error(err)
		}
	}
	t.Logf("load: %d requests (%d http, %d https of which %d HTTP/2), %d failed", res.total(), res.http, res.https, res.h2, len(res.failures))
	if len(res.failures) > 0 {
		t.Errorf("%d requests failed during the reloads, first: %v", len(res.failures), res.failures[:min(5, len(res.failures))])
	}
	if res.exhausted {
		t.Error("the load reached its bound before the reloads ended: it did not cover them all")
	}
	if res.http == 0 || res.https == 0 {
		t.Errorf("the load did not use both listeners: %d http, %d https", res.http, res.https)
	}
}

func newReloadRig(t *testing.T) *reloadRig {
	t.Helper()
	rig := &reloadRig{t: t, gen: 1, serial: 1001}
	rig.newCA()
	rig.dir = siteDir(t, fmt.Sprintf(reloadConfig, rig.gen))
	for _, s := range extraSites {
		www := filepath.Join(rig.dir, "www-"+s.host)
		if err := os.Mkdir(www, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(www, "index.html"), "site "+s.host+"\n")
	}
	rig.writeCert(rig.serial)
	rig.p = startArgs(t, rig.dir, func() []string {
		rig.httpsAddr, rig.admin = freeAddr(t), freeAddr(t)
		return []string{"-https", rig.httpsAddr, "-admin", rig.admin}
	})
	rig.httpC = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}}
	rig.httpsC = &http.Client{Timeout: 10 * time.Second, Transport: rig.tlsTransport(false)}
	if err := rig.check(); err != nil {
		t.Fatalf("before any reload: %v", err)
	}
	return rig
}

// tlsTransport trusts only the test's CA and names a.test in SNI. A
// transport for one check keeps no connection, so it always handshakes.
func (rig *reloadRig) tlsTransport(oneShot bool) *http.Transport {
	return &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: rig.pool, ServerName: "a.test"},
		ForceAttemptHTTP2:   true,
		DisableKeepAlives:   oneShot,
		MaxIdleConnsPerHost: 8,
		DisableCompression:  true,
	}
}

// valid writes the next generation's config and certificate, reloads and
// checks that the new behaviour shows: at once after a POST answered 200,
// within a deadline after a SIGHUP (which answers nothing).
func (rig *reloadRig) valid(step reloadStep) {
	t := rig.t
	t.Helper()
	rig.gen++
	rig.serial = 1000 + int64(rig.gen)
	rig.writeCert(rig.serial)
	rig.writeConfig(rig.configFor(rig.gen, ""))
	if !step.viaPOST {
		rig.p.signal(syscall.SIGHUP)
		var last error
		deadline := time.Now().Add(10 * time.Second)
		for last = rig.check(); last != nil; last = rig.check() {
			if time.Now().After(deadline) {
				t.Fatalf("generation %d not served 10s after SIGHUP: %v", rig.gen, last)
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
	} else {
		status, body := rig.post()
		if status != http.StatusOK {
			t.Fatalf("valid reload: POST /api/reload = %d %s\nstderr:\n%s", status, body, rig.p.stderr)
		}
		if err := rig.check(); err != nil {
			t.Fatalf("right after POST /api/reload answered 200: %v", err)
		}
	}
	// Connections opened before the reload get the new config too.
	pollFor(t, fmt.Sprintf("the load's kept-alive connections to see X-Gen %d", rig.gen), func() bool {
		return rig.seen[0].Load() == int64(rig.gen) && rig.seen[1].Load() == int64(rig.gen)
	})
}

// refused breaks the config one way, reloads, and checks that the reload
// is refused with the errors named and the previous generation still
// serving.
func (rig *reloadRig) refused(step reloadStep) {
	t := rig.t
	t.Helper()
	var want string
	switch step.invalid {
	case "unknown-key":
		rig.writeConfig(rig.configFor(rig.gen+1, "bogus = 1\n"))
		want = `site.bogus`
	case "missing-root":
		rig.writeConfig(rig.configFor(rig.gen+1, "") + "\n[[site]]\nhosts = [\"d.test\"]\nroot = \"nowhere\"\n")
		want = "nowhere"
	case "bad-cert":
		rig.writeConfig(rig.configFor(rig.gen+1, ""))
		writeAtomic(t, filepath.Join(rig.dir, "cert.pem"), []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"))
		want = "tls.cert"
	default:
		t.Fatalf("unknown invalid kind %q", step.invalid)
	}
	if step.viaPOST {
		status, body := rig.post()
		if status != http.StatusUnprocessableEntity {
			t.Fatalf("invalid config (%s): POST /api/reload = %d %s, want 422", step.invalid, status, body)
		}
		var res struct {
			Reloaded bool     `json:"reloaded"`
			Errors   []string `json:"errors"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatalf("invalid config: reload answer is not JSON: %v: %s", err, body)
		}
		if res.Reloaded || !strings.Contains(strings.Join(res.Errors, "\n"), want) {
			t.Errorf("invalid config (%s): answer %s does not name %q", step.invalid, body, want)
		}
	} else {
		logBefore := len(rig.p.stderr.String())
		rig.p.signal(syscall.SIGHUP)
		pollFor(t, "the refused reload in the log", func() bool {
			return strings.Contains(rig.p.stderr.String()[logBefore:], "reload refused")
		})
		if !strings.Contains(rig.p.stderr.String()[logBefore:], want) {
			t.Errorf("invalid config (%s): the log of the refusal does not name %q:\n%s", step.invalid, want, rig.p.stderr.String()[logBefore:])
		}
	}
	if err := rig.check(); err != nil {
		t.Fatalf("after the refused reload (%s), the old config does not serve: %v", step.invalid, err)
	}
}

// configFor is generation gen's config: X-Gen = gen and the sites added
// by then, with extra appended to the first site.
func (rig *reloadRig) configFor(gen int, extra string) string {
	cfg := fmt.Sprintf(reloadConfig, gen) + extra
	for _, s := range extraSites {
		if gen >= s.gen {
			cfg += fmt.Sprintf("\n[[site]]\nhosts = [%q]\nroot = %q\n", s.host, "www-"+s.host)
		}
	}
	return cfg
}

func (rig *reloadRig) writeConfig(cfg string) {
	writeAtomic(rig.t, filepath.Join(rig.dir, "config.toml"), []byte(cfg))
}

// check says how the node differs from the generation it should serve:
// the header on both listeners, the certificate of a fresh handshake, and
// every site added so far.
func (rig *reloadRig) check() error {
	want := fmt.Sprint(rig.gen)
	res, _, err := fetch(rig.httpC, rig.p.url+"/", "a.test")
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	if got := res.Header.Get("X-Gen"); res.StatusCode != 200 || got != want {
		return fmt.Errorf("http a.test: %d X-Gen %q, want 200 X-Gen %q", res.StatusCode, got, want)
	}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: rig.tlsTransport(true)}
	res, _, err = fetch(fresh, "https://"+rig.httpsAddr+"/", "a.test")
	if err != nil {
		return fmt.Errorf("https: %w", err)
	}
	if got := res.Header.Get("X-Gen"); res.StatusCode != 200 || got != want {
		return fmt.Errorf("https a.test: %d X-Gen %q, want 200 X-Gen %q", res.StatusCode, got, want)
	}
	if serial := res.TLS.PeerCertificates[0].SerialNumber; serial.Int64() != rig.serial {
		return fmt.Errorf("https handshake: certificate serial %v, want %d", serial, rig.serial)
	}
	for _, s := range extraSites {
		if rig.gen < s.gen {
			continue
		}
		res, body, err := fetch(rig.httpC, rig.p.url+"/", s.host)
		if err != nil {
			return fmt.Errorf("http %s: %w", s.host, err)
		}
		if res.StatusCode != 200 || string(body) != "site "+s.host+"\n" {
			return fmt.Errorf("http %s: %d %q, want the added site's page", s.host, res.StatusCode, body)
		}
	}
	return nil
}

func fetch(c *http.Client, url, host string) (*http.Response, []byte, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Host = host
	res, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res, body, err
}

func (rig *reloadRig) post() (int, []byte) {
	rig.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+rig.admin+"/api/reload", nil)
	req.Header.Set("Accept", "application/json")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		rig.t.Fatalf("POST /api/reload: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, body
}

type loadResult struct {
	http, https int
	h2          int // https requests answered over HTTP/2
	failures    []string
	exhausted   bool // a worker reached its request bound before stop
}

func (r loadResult) total() int { return r.http + r.https }

// load runs two HTTP and two HTTPS workers on keep-alive connections until
// stop, each bounded by a request count and a time limit.
func (rig *reloadRig) load(stop <-chan struct{}) loadResult {
	const workers, maxEach, maxTime = 4, 20000, 2 * time.Minute
	var mu sync.Mutex
	var res loadResult
	var wg sync.WaitGroup
	deadline := time.Now().Add(maxTime)
	for w := 0; w < workers; w++ {
		secure := w%2 == 1
		c, url := rig.httpC, rig.p.url+"/"
		if secure {
			c, url = rig.httpsC, "https://"+rig.httpsAddr+"/"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i >= maxEach || time.Now().After(deadline) {
					mu.Lock()
					res.exhausted = true
					mu.Unlock()
					return
				}
				r, body, err := fetch(c, url, "a.test")
				mu.Lock()
				switch {
				case err != nil:
					res.failures = append(res.failures, err.Error())
				case r.StatusCode != 200 || string(body) != reloadIndex:
					res.failures = append(res.failures, fmt.Sprintf("%s %d %q", url, r.StatusCode, body))
				case secure:
					res.https++
					if r.ProtoMajor == 2 {
						res.h2++
					}
					rig.seen[1].Store(genOf(r))
				default:
					res.http++
					rig.seen[0].Store(genOf(r))
				}
				rig.served.Store(int64(res.total()))
				mu.Unlock()
				time.Sleep(2 * time.Millisecond) // pacing, so the load spans the reloads; not synchronisation
			}
		}()
	}
	wg.Wait()
	return res
}

// slowDownload fetches big.bin on a connection of its own, reading slowly
// until stop is closed and at least minTime has passed, then at full speed;
// the whole file must arrive intact.
func (rig *reloadRig) slowDownload(secure bool, stop <-chan struct{}, minTime time.Duration) error {
	name, url := "http", rig.p.url+"/big.bin"
	tr := &http.Transport{DisableCompression: true}
	if secure {
		name, url = "https", "https://"+rig.httpsAddr+"/big.bin"
		tr = rig.tlsTransport(false)
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req.Host = "a.test"
	res, err := (&http.Client{Transport: tr, Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("%s download: %w", name, err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("%s download: status %d", name, res.StatusCode)
	}
	want, err := os.ReadFile(filepath.Join(rig.dir, "www", "big.bin"))
	if err != nil {
		return err
	}
	start := time.Now()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 16<<10)
	stopped := false
	for {
		n, err := res.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s download cut after %d of %d bytes: %w", name, len(got), len(want), err)
		}
		if !stopped {
			select {
			case <-stop:
				stopped = time.Since(start) >= minTime
			default:
			}
		}
		if !stopped {
			time.Sleep(10 * time.Millisecond) // a slow client, not synchronisation
		}
	}
	if !stopped {
		return fmt.Errorf("%s download ended before the reloads did: it proves nothing", name)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s download: %d bytes, want %d intact", name, len(got), len(want))
	}
	return nil
}

func genOf(r *http.Response) int64 {
	var g int64
	fmt.Sscan(r.Header.Get("X-Gen"), &g)
	return g
}

func (rig *reloadRig) newCA() {
	t := rig.t
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "shoal reload test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	rig.ca, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	rig.caKey = key
	rig.pool = x509.NewCertPool()
	rig.pool.AddCert(rig.ca)
}

// writeCert replaces cert.pem and key.pem with a fresh leaf signed by the
// test CA, with the given serial.
func (rig *reloadRig) writeCert(serial int64) {
	t := rig.t
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "a.test"},
		DNSNames:     []string{"a.test", "b.test", "c.test", "d.test", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, rig.ca, &key.PublicKey, rig.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, filepath.Join(rig.dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	writeAtomic(t, filepath.Join(rig.dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// writeAtomic replaces a file by renaming, as deploy tools do, so a reader
// never sees half a file.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
