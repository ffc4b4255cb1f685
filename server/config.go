package server

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
)

// Config is a node's whole configuration, parsed once into typed values.
// Relative paths in it are already resolved against Dir.
type Config struct {
	// Path is the file the config came from; "" for the built-in defaults.
	Path string `toml:"-"`
	// Dir is the folder relative paths are resolved against: the config
	// file's folder, or the working directory for the built-in defaults.
	Dir string `toml:"-"`

	Server  ServerConfig  `toml:"server"`
	Log     LogConfig     `toml:"log"`
	TLS     TLSConfig     `toml:"tls"`
	Session SessionConfig `toml:"session"`
	Sites   []SiteConfig  `toml:"site"`
	Cluster ClusterConfig `toml:"cluster"`
	ACME    ACMEConfig    `toml:"acme"`

	index keyIndex
}

// ServerConfig is the [server] table.
type ServerConfig struct {
	Name              string        `toml:"name"`
	HTTP              string        `toml:"http"`
	HTTPS             string        `toml:"https"`
	Admin             string        `toml:"admin"`
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`
	IdleTimeout       time.Duration `toml:"idle_timeout"`
	BodyTimeout       time.Duration `toml:"body_timeout"`
	SendTimeout       time.Duration `toml:"send_timeout"`
	MaxHeaderBytes    Size          `toml:"max_header_bytes"`
	MaxBodyBytes      Size          `toml:"max_body_bytes"`
	ShutdownGrace     time.Duration `toml:"shutdown_grace"`
	DrainDelay        time.Duration `toml:"drain_delay"`
	TrustedProxies    []string      `toml:"trusted_proxies"`

	// trusted is TrustedProxies parsed.
	trusted []netip.Prefix
}

// Trusted returns the parsed trusted_proxies prefixes.
func (s ServerConfig) Trusted() []netip.Prefix { return s.trusted }

// LogConfig is the [log] table.
type LogConfig struct {
	Access string `toml:"access"`
	Format string `toml:"format"`
	Level  string `toml:"level"`
}

// TLSConfig is the [tls] table.
type TLSConfig struct {
	Cert         string `toml:"cert"`
	Key          string `toml:"key"`
	SelfSigned   bool   `toml:"self_signed"`
	MinVersion   string `toml:"min_version"`
	RedirectHTTP bool   `toml:"redirect_http"`
	HSTS         string `toml:"hsts"`
	HTTP3        bool   `toml:"http3"`
}

// SessionConfig is the [session] table.
type SessionConfig struct {
	Cookie   string        `toml:"cookie"`
	Keys     []string      `toml:"keys"`
	KeyFile  string        `toml:"key_file"`
	MaxAge   time.Duration `toml:"max_age"`
	SameSite string        `toml:"same_site"`
}

// SiteConfig is one [[site]] (virtual host).
type SiteConfig struct {
	Hosts          []string          `toml:"hosts"`
	Root           string            `toml:"root"`
	Templates      string            `toml:"templates"`
	Index          []string          `toml:"index"`
	Browse         bool              `toml:"browse"`
	Compress       bool              `toml:"compress"`
	FollowSymlinks bool              `toml:"follow_symlinks"`
	ErrorPages     map[string]string `toml:"error_pages"`
	Cert           string            `toml:"cert"`
	Key            string            `toml:"key"`
	Headers        map[string]string `toml:"headers"`
	Dev            bool              `toml:"dev"`
	CGI            []CGIConfig       `toml:"-"` // decoded one by one onto defaults

	// errorPages is ErrorPages keyed by status code.
	errorPages map[int]string
}

// StatusPages returns error_pages keyed by status code.
func (s SiteConfig) StatusPages() map[int]string { return s.errorPages }

// CGIConfig is one [[site.cgi]] mapping.
type CGIConfig struct {
	Prefix        string            `toml:"prefix"`
	Dir           string            `toml:"dir"`
	Ext           []string          `toml:"ext"`
	Interpreters  map[string]string `toml:"interpreters"`
	Timeout       time.Duration     `toml:"timeout"`
	MaxConcurrent int               `toml:"max_concurrent"`
	Env           map[string]string `toml:"env"`
	PassEnv       []string          `toml:"pass_env"`
}

// ClusterConfig is the [cluster] table.
type ClusterConfig struct {
	Enabled   bool     `toml:"enabled"`
	Gossip    string   `toml:"gossip"`
	Advertise string   `toml:"advertise"`
	Join      []string `toml:"join"`
	Secret    string   `toml:"secret"`
	PeerURL   string   `toml:"peer_url"`
	PublicURL string   `toml:"public_url"`
	Mode      string   `toml:"mode"`
	Policy    string   `toml:"policy"`
	Balance   string   `toml:"balance"`
	Capacity  int      `toml:"capacity"`
	Margin    float64  `toml:"margin"`
	Sticky    bool     `toml:"sticky"`
	Retries   int      `toml:"retries"`
}

// ACMEConfig is the [acme] table: automatic HTTPS for site hosts that have
// no certificate of their own.
type ACMEConfig struct {
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
		Server: ServerConfig{
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
		Log:     LogConfig{Access: "stdout", Format: "combined", Level: "info"},
		TLS:     TLSConfig{MinVersion: "1.2"},
		Session: SessionConfig{Cookie: "shoal_session", KeyFile: ".shoal/session-keys", MaxAge: 24 * time.Hour, SameSite: "lax"},
		Cluster: ClusterConfig{
			Gossip:   "0.0.0.0:7946",
			Mode:     "proxy",
			Policy:   "least_loaded",
			Balance:  "dynamic",
			Capacity: 64,
			Margin:   0.1,
			Retries:  1,
		},
		ACME: ACMEConfig{
			CA:          "https://acme-v02.api.letsencrypt.org/directory",
			Challenges:  []string{"http-01", "tls-alpn-01"},
			Storage:     ".shoal/acme",
			RenewBefore: 720 * time.Hour,
		},
	}
}

// DefaultSite is a [[site]] with every key at its default.
func DefaultSite() SiteConfig {
	return SiteConfig{
		Root:      "www",
		Templates: "templates",
		Index:     []string{"index.html", "index.tmpl"},
		Compress:  true,
	}
}

// DefaultCGI is a [[site.cgi]] with every key at its default.
func DefaultCGI() CGIConfig {
	return CGIConfig{
		Timeout:       30 * time.Second,
		MaxConcurrent: 16,
		PassEnv:       []string{"PATH"},
	}
}

// ConfigError is one problem in a config, placed at file:line:column.
type ConfigError struct {
	File string
	Pos  Pos
	Key  string
	Msg  string
}

func (e *ConfigError) Error() string {
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

// ConfigErrors is every problem found in one config, in file order.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// LoadConfig reads, decodes and resolves a config file, without validating
// it (flags may still change it); call Validate after. path "" gives the
// built-in defaults.
func LoadConfig(path string) (*Config, error) {
	cfg := Defaults()
	if path == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		cfg.Dir = wd
		return cfg, nil
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg.Path = path
	cfg.Dir = filepath.Dir(abs)
	if errs := cfg.decode(string(src)); len(errs) > 0 {
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
func (c *Config) decode(src string) ConfigErrors {
	var raw map[string]toml.Primitive
	md, err := toml.Decode(src, &raw)
	if err != nil {
		return ConfigErrors{c.syntaxError(err, src)}
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
		default:
			d.errs = append(d.errs, c.errAt(name, fmt.Sprintf("unknown key %q", name)))
		}
	}
	d.errs.sort()
	return d.errs
}

type decoder struct {
	c    *Config
	md   toml.MetaData
	errs ConfigErrors
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
		d.fields(path, keys, &site)
		d.c.Sites = append(d.c.Sites, site)
	}
}

func (d *decoder) cgis(path string, prim toml.Primitive) []CGIConfig {
	var tables []map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(prim, &tables); err != nil {
		d.errs = append(d.errs, d.c.errAt(path, path+": must be an array of tables ([[site.cgi]])"))
		return nil
	}
	out := make([]CGIConfig, len(tables))
	for j, keys := range tables {
		out[j] = DefaultCGI()
		d.fields(fmt.Sprintf("%s.%d", path, j), keys, &out[j])
	}
	return out
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

func (es ConfigErrors) sort() {
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
func (c *Config) syntaxError(err error, src string) *ConfigError {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &ConfigError{File: c.Path, Msg: err.Error()}
	}
	pos := Pos{Line: pe.Position.Line, Col: pe.Position.Col}
	if st := pe.Position.Start; st > 0 && st <= len(src) {
		// The byte offset is exact; toml's line number may already be
		// past a newline it looked ahead to.
		before := src[:st]
		pos.Line = strings.Count(before, "\n") + 1
		pos.Col = len(before) - (strings.LastIndexByte(before, '\n') + 1) + 1
	}
	return &ConfigError{File: c.Path, Pos: pos, Msg: pe.Message}
}

// tomlError turns an error from the toml package into a placed ConfigError.
func (c *Config) tomlError(err error) *ConfigError {
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
		return &ConfigError{File: c.Path, Pos: pos, Key: pe.LastKey, Msg: msg}
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
func (c *Config) errAt(key, msg string) *ConfigError {
	e := &ConfigError{File: c.Path, Key: key, Msg: msg}
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
