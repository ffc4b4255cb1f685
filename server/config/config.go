package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"shoal/handlers/route"
)

// Config is a node's whole configuration, parsed once into typed values.
// Relative paths in it are already resolved against Dir.
type Config struct {
	// Path is the file the config came from; "" for the built-in defaults.
	Path string `toml:"-"`
	// Dir is the folder relative paths are resolved against: the config
	// file's folder, or the working directory for the built-in defaults.
	Dir string `toml:"-"`

	Server  Server  `toml:"server"`
	Log     Log     `toml:"log"`
	TLS     TLS     `toml:"tls"`
	Session Session `toml:"session"`
	Sites   []Site  `toml:"site"`
	Cluster Cluster `toml:"cluster"`
	// Upstreams are the [[upstream]] application servers routes proxy to.
	Upstreams []Upstream `toml:"-" table:"upstream"` // decoded one by one onto DefaultUpstream
	ACME      ACME       `toml:"acme"`

	index keyIndex
}

// Server is the [server] table.
type Server struct {
	// Name is the node's name in the cluster, logs and the status page; "" means hostname:http-port.
	Name string `toml:"name"`
	// HTTP is the plain-HTTP listen address, such as ":8080"; "" disables it.
	HTTP string `toml:"http"`
	// HTTPS is the TLS listen address, such as ":8443"; "" disables it.
	HTTPS string `toml:"https"`
	// Admin is the listen address of the status page, /metrics, /healthz and the JSON API; "" disables it.
	Admin string `toml:"admin"`
	// ReadHeaderTimeout bounds the reading of a request's header block (against slowloris).
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`
	// IdleTimeout closes a keep-alive connection that waits this long for its next request (up to 1/16 longer: a busy connection moves its timer only that often).
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// BodyTimeout is the longest wait between two reads of a request body (a trickled body is cut off, a steady upload is not).
	BodyTimeout time.Duration `toml:"body_timeout"`
	// SendTimeout is the longest wait for one write to a client (a stalled reader is cut off, a long download is not; up to 1/16 longer, as idle_timeout).
	SendTimeout time.Duration `toml:"send_timeout"`
	// MaxHeaderBytes caps a request's header block; a larger one gets 431.
	MaxHeaderBytes Size `toml:"max_header_bytes"`
	// MaxBodyBytes caps a request body; a larger Content-Length gets 413 before any body is read.
	MaxBodyBytes Size `toml:"max_body_bytes"`
	// ShutdownGrace is how long a stopping node lets in-flight requests finish.
	ShutdownGrace time.Duration `toml:"shutdown_grace"`
	// DrainDelay is how long a node publishes draining on SIGTERM before it leaves and stops accepting.
	DrainDelay time.Duration `toml:"drain_delay"`
	// TrustedProxies lists the CIDRs (or single IPs) whose X-Forwarded-For is believed.
	TrustedProxies []string `toml:"trusted_proxies"`
	// MinSendRate is the slowest a client may accept a response, in bytes
	// per second averaged over send_timeout of blocked writes; slower ones
	// are cut (slow read). "" or 0 = off (the default, as SPEC; "1KiB/s"
	// is what nginx users set).
	MinSendRate Rate `toml:"min_send_rate"`
	// MaxConnsPerIP caps the open connections of one client address on
	// the http and https listeners (trusted_proxies and peers exempt);
	// beyond it new ones are closed at once (one host cannot take every
	// descriptor). 0 = no cap (the default, as SPEC).
	MaxConnsPerIP int `toml:"max_conns_per_ip"`

	// trusted is TrustedProxies parsed.
	trusted []netip.Prefix
}

// Trusted returns the parsed trusted_proxies prefixes.
func (s Server) Trusted() []netip.Prefix { return s.trusted }

// Log is the [log] table.
type Log struct {
	// Access is where the access log goes: stdout, stderr, a file path, or off.
	Access string `toml:"access"`
	// Format is the access log's format: combined (Apache/NCSA) or json.
	Format string `toml:"format"`
	// Level is the error log's level (on stderr): debug, info, warn or error.
	Level string `toml:"level"`
}

// TLS is the [tls] table.
type TLS struct {
	// Cert is the PEM certificate chain (leaf first) for sites without their own.
	Cert string `toml:"cert"`
	// Key is the PEM private key (PKCS#1, PKCS#8 or EC) of tls.cert.
	Key string `toml:"key"`
	// SelfSigned makes an in-memory certificate for the site hosts and localhost (development only).
	SelfSigned bool `toml:"self_signed"`
	// MinVersion is the lowest TLS version accepted: "1.2" or "1.3".
	MinVersion string `toml:"min_version"`
	// RedirectHTTP makes the http listener answer 308 to https.
	RedirectHTTP bool `toml:"redirect_http"`
	// HSTS is the Strict-Transport-Security value sent over TLS; "" sends none.
	HSTS string `toml:"hsts"`
	// HTTP3 serves HTTP/3 (QUIC) on the https port's UDP and announces it with Alt-Svc.
	HTTP3 bool `toml:"http3"`
}

// Session is the [session] table.
type Session struct {
	// Cookie is the session cookie's name.
	Cookie string `toml:"cookie"`
	// Keys are base64 key pairs, newest first: a hash key (32 or 64 bytes), then a block key (16, 24 or 32); older pairs still decode.
	Keys []string `toml:"keys"`
	// KeyFile keeps a generated key pair (mode 0600) when neither keys nor a cluster secret give one; relative to the config.
	KeyFile string `toml:"key_file"`
	// MaxAge is the session cookie's lifetime, counted from the session's last change.
	MaxAge time.Duration `toml:"max_age"`
	// SameSite is the session cookie's SameSite attribute: lax, strict or none.
	SameSite string `toml:"same_site"`
}

// Site is one [[site]] (virtual host).
type Site struct {
	// Hosts are the names this site answers, such as "*.example.com"; [] answers any name.
	Hosts []string `toml:"hosts"`
	// Root is the folder the site's files and pages are served from.
	Root string `toml:"root"`
	// Templates is the folder of layouts and partials parsed into every page.
	Templates string `toml:"templates"`
	// Index lists the files tried, in order, for a URL ending in /.
	Index []string `toml:"index"`
	// Browse turns on directory listings for folders without an index file.
	Browse bool `toml:"browse"`
	// Compress turns on gzip/zstd of text types and serves precompressed .br/.zst/.gz sidecars.
	Compress bool `toml:"compress"`
	// FollowSymlinks follows symlinks wherever they lead, also out of root (Apache's FollowSymLinks), for static files and CGI scripts; false refuses every static link and CGI links leaving their folder.
	FollowSymlinks bool `toml:"follow_symlinks"`
	// ErrorPages maps a status to a file under root served with it, such as {404 = "404.html"}.
	ErrorPages map[string]string `toml:"error_pages"`
	// Cert is this site's own PEM certificate, chosen by SNI.
	Cert string `toml:"cert"`
	// Key is the private key of this site's cert.
	Key string `toml:"key"`
	// Headers are extra response headers sent on every response of the site.
	Headers map[string]string `toml:"headers"`
	// Dev re-parses changed templates per request and shows template errors in the page (development only).
	Dev bool `toml:"dev"`
	// CGI are the site's [[site.cgi]] mappings.
	CGI    []CGI   `toml:"-" table:"cgi"`   // decoded one by one onto defaults
	Routes []Route `toml:"-" table:"route"` // [[site.route]], decoded one by one

	// errorPages is ErrorPages keyed by status code.
	errorPages map[int]string
}

// StatusPages returns error_pages keyed by status code.
func (s Site) StatusPages() map[int]string { return s.errorPages }

// CGI is one [[site.cgi]] mapping.
type CGI struct {
	// Prefix is the URL prefix whose paths run scripts from dir (ScriptAlias style); "/cgi-bin/" when neither ext nor program is set.
	Prefix string `toml:"prefix"`
	// Dir is the folder of scripts for prefix, relative to the config.
	Dir string `toml:"dir"`
	// Ext lists extensions of files under root that run as scripts (AddHandler style).
	Ext []string `toml:"ext"`
	// Interpreters maps an extension to the program that runs it, such as {".php" = "php-cgi"}.
	Interpreters map[string]string `toml:"interpreters"`
	// Program is one program run for every path under prefix (the rest is
	// PATH_INFO), as Apache's ScriptAlias to a file; "" = scripts in dir.
	Program string `toml:"program"`
	// Timeout kills a script (its whole process group; 504 to the client)
	// that moved no byte on stdin or stdout for this long, while a long
	// steady download goes on.
	Timeout time.Duration `toml:"timeout"`
	// MaxTime caps a whole run however busy the script is; 0 = no cap.
	MaxTime time.Duration `toml:"max_time"`
	// MaxBodyBytes caps this mapping's request bodies (git pushes exceed
	// the server's); 0 (written "") = server.max_body_bytes.
	MaxBodyBytes InheritSize `toml:"max_body_bytes"`
	// MaxConcurrent caps the mapping's scripts running at once on a node; beyond the queue, 503.
	MaxConcurrent int `toml:"max_concurrent"`
	// QueueTimeout is the longest a request waits for a free slot before
	// 503 + Retry-After (a burst of clones waits instead of failing).
	QueueTimeout time.Duration `toml:"queue_timeout"`
	// Env are extra environment variables given to every script.
	Env map[string]string `toml:"env"`
	// PassEnv names the server's environment variables passed to scripts.
	PassEnv []string `toml:"pass_env"`
}

// InheritSize is a size where "" (or 0) means "the enclosing default".
type InheritSize Size

// UnmarshalTOML accepts "" as 0, else what Size accepts.
func (s *InheritSize) UnmarshalTOML(v any) error {
	if str, ok := v.(string); ok && strings.TrimSpace(str) == "" {
		*s = 0
		return nil
	}
	return (*Size)(s).UnmarshalTOML(v)
}

// Route is one [[site.route]]: per-path rules evaluated in file
// order (see handlers/route for what each key does).
type Route struct {
	// Path is the pattern: "/exact", "/prefix/*", "*.ext" or "~regexp".
	Path string `toml:"path"`
	// Methods limits the route to these methods; [] = any (GET takes HEAD).
	Methods []string `toml:"methods"`
	// Scheme limits the route to "http" or "https" requests; "" = both.
	// (shoal's addition to SPEC: it makes per-path http->https redirects.)
	Scheme string `toml:"scheme"`
	// Headers sets response headers ("Name" = "v") or removes them ("-Name" = "").
	Headers map[string]string `toml:"headers"`
	// Allow lists client CIDRs; when not empty, other clients get 403.
	Allow []string `toml:"allow"`
	// Deny lists client CIDRs answered 403 (checked before allow).
	Deny []string `toml:"deny"`
	// Auth is an htpasswd file of bcrypt hashes: HTTP Basic auth, 401 without.
	Auth string `toml:"auth"`
	// AuthRealm is the realm the 401 names.
	AuthRealm string `toml:"auth_realm"`
	// Rate is a per-client limit across the cluster ("20/s", "600/m"); beyond it 429.
	Rate string `toml:"rate"`
	// Burst is how many requests above rate a client may send at once.
	Burst int `toml:"burst"`
	// Redirect answers with this URL or path (placeholders allowed).
	Redirect string `toml:"redirect"`
	// Status is the redirect's status: 301, 302, 303, 307 or 308.
	Status int `toml:"status"`
	// Respond answers this status with the site's error page.
	Respond int `toml:"respond"`
	// Rewrite changes the path (and query) internally, then routes again.
	Rewrite string `toml:"rewrite"`
	// TryFiles serves the first candidate that exists; a last "=404" entry
	// is the answer when none does.
	TryFiles []string `toml:"try_files"`
	// Upstream proxies the request to the named [[upstream]].
	Upstream string `toml:"upstream"`
}

// DefaultRoute is a [[site.route]] with every key at its default.
func DefaultRoute() Route {
	return Route{AuthRealm: "restricted"}
}

// Upstream is one [[upstream]]: application servers a route's
// `upstream` proxies to (see handlers/upstream).
type Upstream struct {
	// Name is what routes call the upstream; required and unique.
	Name string `toml:"name"`
	// Targets are "http://h:p", "https://h:p", "unix:/path.sock",
	// "fastcgi://h:p" or "fastcgi+unix:/path.sock"; at least one.
	Targets []string `toml:"targets"`
	// Policy picks a target per request: least_loaded, round_robin,
	// ip_hash, random or first.
	Policy string `toml:"policy"`
	// Health is a path checked with GET every health_interval (2xx-3xx is
	// healthy); "" = passive health only.
	Health string `toml:"health"`
	// HealthInterval is the time between active checks.
	HealthInterval time.Duration `toml:"health_interval"`
	// FailTimeout is how long a target that refused or timed out is
	// skipped (requests do not queue behind a dead application).
	FailTimeout time.Duration `toml:"fail_timeout"`
	// ConnectTimeout bounds a connect to a target.
	ConnectTimeout time.Duration `toml:"connect_timeout"`
	// Timeout bounds the wait for the response header (a frozen
	// application gives 504 instead of holding the request); up to 1/16
	// longer on a kept connection, as idle_timeout.
	Timeout time.Duration `toml:"timeout"`
	// Retries is how many other targets an idempotent request is tried on
	// when a connection fails before any response.
	Retries int `toml:"retries"`
	// StripPrefix is removed from the path before forwarding.
	StripPrefix string `toml:"strip_prefix"`
	// Headers are set on requests toward the target; "-Name" removes one.
	Headers map[string]string `toml:"headers"`
	// Root is the document root as a FastCGI server sees it (required
	// with fastcgi targets): SCRIPT_FILENAME = root + script.
	Root string `toml:"root"`
	// Index is the FastCGI script for a path ending in /.
	Index string `toml:"index"`
	// Split ends SCRIPT_NAME (the rest is PATH_INFO) for FastCGI.
	Split string `toml:"split"`
	// Env holds extra FastCGI parameters.
	Env map[string]string `toml:"env"`
}

// DefaultUpstream is an [[upstream]] with every key at its default.
func DefaultUpstream() Upstream {
	return Upstream{
		Policy:         "least_loaded",
		HealthInterval: 5 * time.Second,
		FailTimeout:    10 * time.Second,
		ConnectTimeout: 5 * time.Second,
		Timeout:        60 * time.Second,
		Retries:        1,
		Index:          "index.php",
		Split:          ".php",
	}
}

// Cluster is the [cluster] table.
type Cluster struct {
	// Enabled turns clustering on (so do the -gossip and -join flags).
	Enabled bool `toml:"enabled"`
	// Gossip is memberlist's bind address (TCP and UDP).
	Gossip string `toml:"gossip"`
	// Advertise is the address peers use to reach this node's gossip; "" means the bound one.
	Advertise string `toml:"advertise"`
	// Join lists peers to join, retried with backoff until one answers.
	Join []string `toml:"join"`
	// Secret is the base64 cluster key (16, 24 or 32 bytes): encrypts gossip and signs proxied requests; "" means $SHOAL_SECRET, else .shoal/cluster-secret.
	Secret string `toml:"secret"`
	// PeerURL is how peers reach this node's HTTP; "" derives it from the HTTP listener and advertise.
	PeerURL string `toml:"peer_url"`
	// PublicURL is how clients reach this node, for mode = "redirect".
	PublicURL string `toml:"public_url"`
	// Mode is how work goes to a peer: proxy or redirect (307).
	Mode string `toml:"mode"`
	// Policy picks the peer: least_loaded, round_robin, ip_hash or random.
	Policy string `toml:"policy"`
	// Balance is what requests are shared: dynamic (pages and CGI), all or none.
	Balance string `toml:"balance"`
	// Capacity is the number of in-flight requests at which this node counts as full.
	Capacity int `toml:"capacity"`
	// Margin is how much less loaded (fraction of capacity) a peer must be to win under least_loaded.
	Margin float64 `toml:"margin"`
	// Sticky keeps a client on the node that served it with an affinity cookie.
	Sticky bool `toml:"sticky"`
	// Retries is how many other nodes an idempotent request is retried on after a peer fails.
	Retries int `toml:"retries"`
	// PeerTimeout bounds each proxied attempt until the peer's response
	// header arrives, so a frozen peer costs a client at most this before
	// the request is retried elsewhere.
	PeerTimeout time.Duration `toml:"peer_timeout"`
	// PeerTLS sends peer traffic over mutual TLS with certificates derived
	// from the secret, so nobody without it can connect or replay a hop;
	// false keeps plain HTTP, for a private network.
	PeerTLS bool `toml:"peer_tls"`
}

// ACME is the [acme] table: automatic HTTPS for site hosts that have
// no certificate of their own.
type ACME struct {
	// Enabled turns ordering and renewal on; off, nothing talks to a CA.
	Enabled bool `toml:"enabled"`
	// CA is the ACME directory URL (https); Let's Encrypt production by default.
	CA string `toml:"ca"`
	// CARoot is a PEM bundle trusted for the CA's own HTTPS (a private CA,
	// Pebble); "" trusts the system roots.
	CARoot string `toml:"ca_root"`
	// Email is the ACME account contact the CA writes to about expiry; "" none.
	Email string `toml:"email"`
	// Challenges are the allowed challenge types: http-01 and/or tls-alpn-01.
	Challenges []string `toml:"challenges"`
	// Storage is the folder (relative to the config) for the account, keys
	// and certificates, files 0600 in 0700 folders, kept across restarts.
	Storage string `toml:"storage"`
	// RenewBefore is how long before expiry a certificate is renewed; long
	// enough to ride out a CA outage of days.
	RenewBefore time.Duration `toml:"renew_before"`
}

// Defaults returns the built-in configuration: serve ./www on :8080.
func Defaults() *Config {
	return &Config{
		Server: Server{
			HTTP:              ":8080",
			Admin:             "127.0.0.1:9180",
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			BodyTimeout:       60 * time.Second,
			SendTimeout:       60 * time.Second,
			MaxHeaderBytes:    64 << 10,
			MaxBodyBytes:      32 << 20,
			ShutdownGrace:     30 * time.Second,
			DrainDelay:        time.Second,
		},
		Log:     Log{Access: "stdout", Format: "combined", Level: "info"},
		TLS:     TLS{MinVersion: "1.2"},
		Session: Session{Cookie: "shoal_session", KeyFile: ".shoal/session-keys", MaxAge: 24 * time.Hour, SameSite: "lax"},
		Cluster: Cluster{
			Gossip:   "0.0.0.0:7946",
			Mode:     "proxy",
			Policy:   "least_loaded",
			Balance:  "dynamic",
			Capacity: 64,
			Margin:   0.1,
			Retries:  1,
			// Room for a slow page or script to start its answer; a frozen
			// peer costs a client at most this.
			PeerTimeout: 5 * time.Second,
			PeerTLS:     true,
		},
		ACME: ACME{
			CA:          "https://acme-v02.api.letsencrypt.org/directory",
			Challenges:  []string{"http-01", "tls-alpn-01"},
			Storage:     ".shoal/acme",
			RenewBefore: 720 * time.Hour,
		},
	}
}

// DefaultSite is a [[site]] with every key at its default.
func DefaultSite() Site {
	return Site{
		Root:      "www",
		Templates: "templates",
		Index:     []string{"index.html", "index.tmpl"},
		Compress:  true,
	}
}

// DefaultCGI is a [[site.cgi]] with every key at its default.
func DefaultCGI() CGI {
	return CGI{
		Timeout:       30 * time.Second,
		MaxConcurrent: 16,
		QueueTimeout:  time.Second,
		PassEnv:       []string{"PATH"},
	}
}

// Error is one problem in a config, placed at file:line:column.
type Error struct {
	File string
	Pos  Pos
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Pos.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Pos.Line, e.Pos.Col)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one config, in file order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Load reads, decodes and resolves a config file, without validating
// it (flags may still change it); call Validate after. path "" gives the
// built-in defaults.
func Load(path string) (*Config, error) {
	cfg := Defaults()
	if path == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		cfg.Dir = wd
		return cfg, nil
	}
	src, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	if err := checkNesting(path, src); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg.Path = path
	cfg.Dir = filepath.Dir(abs)
	if errs := cfg.decode(src); len(errs) > 0 {
		if cfg.index.pos == nil {
			return nil, errs // a syntax error: nothing was decoded
		}
		// Decoded around the bad keys: the caller may still Validate, so
		// `shoal check` reports every problem at once.
		return cfg, errs
	}
	return cfg, nil
}

// decode fills c from TOML source key by key, so that one bad value does
// not hide the problems after it, and unknown keys are found with their
// position (toml reports them without one).
func (c *Config) decode(src string) Errors {
	var raw map[string]toml.Primitive
	md, err := toml.Decode(src, &raw)
	if err != nil {
		return Errors{c.syntaxError(err, src)}
	}
	c.index = indexKeys(src)
	d := &decoder{c: c, md: md}
	tables := map[string]any{
		"server":  &c.Server,
		"log":     &c.Log,
		"tls":     &c.TLS,
		"session": &c.Session,
		"cluster": &c.Cluster,
		"acme":    &c.ACME,
	}
	for _, name := range sortedKeys(raw) {
		prim := raw[name]
		switch dst, ok := tables[name]; {
		case ok:
			d.table(name, prim, dst)
		case name == "site":
			d.sites(prim)
		case name == "upstream":
			d.upstreams(prim)
		default:
			d.errs = append(d.errs, c.errAt(name, fmt.Sprintf("unknown key %q", name)))
		}
	}
	d.errs.Sort()
	return d.errs
}

type decoder struct {
	c    *Config
	md   toml.MetaData
	errs Errors
}

func (d *decoder) sites(prim toml.Primitive) {
	var sites []map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(prim, &sites); err != nil {
		d.errs = append(d.errs, d.c.errAt("site", "site: must be an array of tables ([[site]])"))
		return
	}
	for i, keys := range sites {
		site := DefaultSite()
		path := fmt.Sprintf("site.%d", i)
		if cgi, ok := keys["cgi"]; ok {
			delete(keys, "cgi")
			site.CGI = d.cgis(path+".cgi", cgi)
		}
		if routes, ok := keys["route"]; ok {
			delete(keys, "route")
			site.Routes = d.routes(path+".route", routes)
		}
		d.fields(path, keys, &site)
		d.c.Sites = append(d.c.Sites, site)
	}
}

func (d *decoder) cgis(path string, prim toml.Primitive) []CGI {
	var tables []map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(prim, &tables); err != nil {
		d.errs = append(d.errs, d.c.errAt(path, path+": must be an array of tables ([[site.cgi]])"))
		return nil
	}
	out := make([]CGI, len(tables))
	for j, keys := range tables {
		out[j] = DefaultCGI()
		d.fields(fmt.Sprintf("%s.%d", path, j), keys, &out[j])
	}
	return out
}

func (d *decoder) routes(path string, prim toml.Primitive) []Route {
	var tables []map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(prim, &tables); err != nil {
		d.errs = append(d.errs, d.c.errAt(path, path+": must be an array of tables ([[site.route]])"))
		return nil
	}
	out := make([]Route, len(tables))
	for j, keys := range tables {
		out[j] = DefaultRoute()
		d.fields(fmt.Sprintf("%s.%d", path, j), keys, &out[j])
	}
	return out
}

func (d *decoder) upstreams(prim toml.Primitive) {
	var tables []map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(prim, &tables); err != nil {
		d.errs = append(d.errs, d.c.errAt("upstream", "upstream: must be an array of tables ([[upstream]])"))
		return
	}
	for i, keys := range tables {
		up := DefaultUpstream()
		d.fields(fmt.Sprintf("upstream.%d", i), keys, &up)
		d.c.Upstreams = append(d.c.Upstreams, up)
	}
}

func (d *decoder) table(path string, prim toml.Primitive, dst any) {
	var keys map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(prim, &keys); err != nil {
		d.errs = append(d.errs, d.c.errAt(path, path+": must be a table (["+path+"])"))
		return
	}
	d.fields(path, keys, dst)
}

// fields decodes each key into the struct field whose toml tag names it.
func (d *decoder) fields(path string, keys map[string]toml.Primitive, dst any) {
	rv := reflect.ValueOf(dst).Elem()
	byTag := map[string]reflect.Value{}
	for i := 0; i < rv.NumField(); i++ {
		tag := strings.Split(rv.Type().Field(i).Tag.Get("toml"), ",")[0]
		if tag != "" && tag != "-" {
			byTag[tag] = rv.Field(i)
		}
	}
	for _, k := range sortedKeys(keys) {
		key := path + "." + k
		field, ok := byTag[k]
		if !ok {
			d.errs = append(d.errs, d.c.errAt(key, fmt.Sprintf("unknown key %q", stripIndices(key))))
			continue
		}
		if msg := d.typeProblem(key, field, keys[k]); msg != "" {
			d.errs = append(d.errs, d.c.errAt(key, key+": "+msg))
			continue
		}
		if field.Type() == durationType && !d.isString(keys[k]) {
			d.errs = append(d.errs, d.c.errAt(key, fmt.Sprintf("%s: a duration must be a string such as \"10s\" or \"1m30s\"", stripIndices(key))))
			continue
		}
		if err := d.md.PrimitiveDecode(keys[k], field.Addr().Interface()); err != nil {
			e := d.c.tomlError(err)
			e.Key = stripIndices(key)
			if p, ok := d.c.index.lookup(key); ok {
				e.Pos = p
			}
			d.errs = append(d.errs, e)
		}
	}
}

var durationType = reflect.TypeOf(time.Duration(0))

// isString reports whether a TOML value is a string (toml would take an
// integer duration as nanoseconds: "timeout = 30" is 30ns, never meant).
func (d *decoder) isString(p toml.Primitive) bool {
	var v any
	if err := d.md.PrimitiveDecode(p, &v); err != nil {
		return false
	}
	_, ok := v.(string)
	return ok
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// syntaxError places a TOML syntax error. toml counts a newline as the
// start of the next line, so an error found at a line's end is moved back
// to it.
func (c *Config) syntaxError(err error, src string) *Error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: c.Path, Msg: err.Error()}
	}
	pos := Pos{Line: pe.Position.Line, Col: pe.Position.Col}
	if st := pe.Position.Start; st > 0 && st <= len(src) {
		// The byte offset is exact; toml's line number may already be
		// past a newline it looked ahead to.
		before := src[:st]
		pos.Line = strings.Count(before, "\n") + 1
		pos.Col = len(before) - (strings.LastIndexByte(before, '\n') + 1) + 1
	}
	return &Error{File: c.Path, Pos: pos, Msg: pe.Message}
}

// tomlError turns an error from the toml package into a placed Error.
func (c *Config) tomlError(err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		pos := Pos{Line: pe.Position.Line, Col: pe.Position.Col}
		if p, ok := c.index.lookup(pe.LastKey); ok && pe.LastKey != "" {
			pos = p
		}
		msg := pe.Message
		if pe.LastKey != "" {
			msg = fmt.Sprintf("%s: %s", pe.LastKey, pe.Message)
		}
		return &Error{File: c.Path, Pos: pos, Key: pe.LastKey, Msg: msg}
	}
	// Type mismatches come as plain errors: `toml: line N (last key "k"): msg`.
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	key := ""
	if i := strings.Index(msg, `(last key "`); i >= 0 {
		rest := msg[i+len(`(last key "`):]
		if j := strings.Index(rest, `")`); j >= 0 {
			key = rest[:j]
			after := strings.TrimPrefix(rest[j+2:], ": ")
			msg = key + ": " + after
		}
	}
	ce := c.errAt(key, msg)
	return ce
}

// errAt makes an error placed at key (a dotted path, with array indices
// where known).
func (c *Config) errAt(key, msg string) *Error {
	e := &Error{File: c.Path, Key: key, Msg: msg}
	// A key left at its default has no line: place it at its table (the
	// [[site]] header of the right element), walking up the path.
	for k := key; k != ""; {
		if p, ok := c.index.lookup(k); ok {
			e.Pos = p
			return e
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 || stripIndices(k[:i]) == k[:i] {
			break // no array element left on the path
		}
		k = k[:i]
	}
	for k := stripIndices(key); k != ""; {
		if p, ok := c.index.lookup(k); ok {
			e.Pos = p
			return e
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return e
}

func stripIndices(key string) string {
	parts := strings.Split(key, ".")
	out := parts[:0]
	for _, p := range parts {
		if p != "" && strings.Trim(p, "0123456789") == "" {
			continue
		}
		out = append(out, p)
	}
	return strings.Join(out, ".")
}

// RouteSpecs returns the site's routes as the route package takes them.
func (s Site) RouteSpecs() []route.Spec {
	specs := make([]route.Spec, len(s.Routes))
	for i, r := range s.Routes {
		specs[i] = route.Spec{
			Path: r.Path, Methods: r.Methods, Scheme: r.Scheme, Headers: r.Headers, Allow: r.Allow, Deny: r.Deny,
			Auth: r.Auth, AuthRealm: r.AuthRealm, Rate: r.Rate, Burst: r.Burst,
			Redirect: r.Redirect, Status: r.Status, Respond: r.Respond, Rewrite: r.Rewrite,
			TryFiles: r.TryFiles, Upstream: r.Upstream,
		}
	}
	return specs
}

// HasUpstream reports whether an [[upstream]] of that name is configured.
func (c *Config) HasUpstream(name string) bool {
	for _, u := range c.Upstreams {
		if u.Name == name {
			return true
		}
	}
	return false
}
