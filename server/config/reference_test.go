package config

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The configuration reference, docs/configuration.md, is generated from
// the config structs: key names from their toml tags, types and defaults
// by reflection on Defaults/DefaultSite/DefaultCGI, descriptions from the
// fields' doc comments. TestReference fails when the file and the code
// disagree; `go test ./server/config -run TestReference -update` rewrites it.

var updateReference = flag.Bool("update", false, "rewrite docs/configuration.md from the config structs")

const referencePath = "../../docs/configuration.md"

// elementDefaults gives the default of one element of an array of tables:
// a new [[table]] needs its DefaultX here, or its defaults read as zero.
var elementDefaults = map[reflect.Type]func() any{
	reflect.TypeFor[Site]():     func() any { return DefaultSite() },
	reflect.TypeFor[CGI]():      func() any { return DefaultCGI() },
	reflect.TypeFor[Route]():    func() any { return DefaultRoute() },
	reflect.TypeFor[Upstream](): func() any { return DefaultUpstream() },
}

const reloadDefault = "applied by SIGHUP or `POST /api/reload`; requests already running finish on the old config"

// reloadNotes says how a key behaves on reload where it is not simply
// applied (reloadDefault). Keys are full paths without indices.
var reloadNotes = map[string]string{
	"server.name":                "restart when the cluster is on (the node's identity; a reload logs a warning); otherwise applied",
	"server.http":                "reload: the new address is opened before the old one is closed; in a cluster, a `peer_url` derived from it changes only at restart",
	"server.https":               "reload: the new address is opened before the old one is closed; in a cluster, a `peer_url` derived from it changes only at restart",
	"server.admin":               "reload: the new address is opened before the old one is closed",
	"server.read_header_timeout": "applied; new connections get it (the listener's server is replaced on the same socket); open ones finish on the old value",
	"server.idle_timeout":        "reload: new connections get it (the listener's server is replaced on the same socket); open ones finish on the old value",
	"server.send_timeout":        "reload: new connections get it (the listener's server is replaced on the same socket); open ones finish on the old value",
	"server.max_header_bytes":    "reload: new connections get it (the listener's server is replaced on the same socket); open ones finish on the old value",
	"server.shutdown_grace":      "reload: read when the node stops",
	"server.drain_delay":         "reload: read when the node stops",
	"server.trusted_proxies":     "applied for the sites; the cluster's own check of `X-Forwarded-*` keeps the list it started with until restart (a reload logs a warning)",
	"log.access":                 "reload: the log is reopened when `access` or `format` changed",
	"log.format":                 "reload: the log is reopened when `access` or `format` changed",
	"tls.cert":                   "reload: the files are read again; new handshakes get the new certificate, open connections keep theirs; a broken file keeps the old set",
	"tls.key":                    "reload: the files are read again; new handshakes get the new certificate, open connections keep theirs; a broken file keeps the old set",
	"tls.min_version":            "restart (a reload logs a warning)",
	"tls.http3":                  "restart (a reload logs a warning)",
	"tls.self_signed":            "reload: the same certificate is kept while the host list is unchanged; a new host makes a new certificate with the same key",
	"site.cert":                  "reload: the files are read again; new handshakes get the new certificate, open connections keep theirs; a broken file keeps the old set",
	"site.key":                   "reload: the files are read again; new handshakes get the new certificate, open connections keep theirs; a broken file keeps the old set",
	"site.templates":             "reload: every page and layout is parsed again; one that fails keeps the previous pages (with `dev`, changes are picked up per request)",
	"cluster.enabled":            "restart (a reload logs a warning naming it)",
	"cluster.gossip":             "restart (a reload logs a warning naming it)",
	"cluster.advertise":          "restart (a reload logs a warning naming it)",
	"cluster.join":               "restart (a reload logs a warning naming it)",
	"cluster.secret":             "restart (a reload logs a warning naming it)",
	"cluster.peer_url":           "restart (a reload logs a warning naming it)",
	"cluster.public_url":         "restart (a reload logs a warning naming it)",
	"cluster.peer_timeout":       "restart (a reload logs a warning naming it)",
	"cluster.peer_tls":           "restart (a reload logs a warning naming it); change it on every node together",
	"cluster.mode":               "reload: the next request routed follows it; a request already being routed finishes on the old setting",
	"cluster.policy":             "reload: the next request routed follows it; a request already being routed finishes on the old setting",
	"cluster.margin":             "reload: the next request routed follows it; a request already being routed finishes on the old setting",
	"cluster.sticky":             "reload: the next request routed follows it; a request already being routed finishes on the old setting",
	"cluster.retries":            "reload: the next request routed follows it; a request already being routed finishes on the old setting",
	"cluster.capacity":           "reload: used by the next request; peers see it within about a second",
	"cluster.balance":            "reload: the sites are rebuilt with it",
	"acme.enabled":               "restart; while on, a reload hands new site hosts to the running ACME client",
	"acme.ca":                    "restart",
	"acme.ca_root":               "restart",
	"acme.email":                 "restart",
	"acme.challenges":            "restart",
	"acme.storage":               "restart",
	"acme.renew_before":          "restart",
}

// referenceExamples are example values for keys whose default says
// little (mostly empty ones); other keys show their default.
var referenceExamples = map[string]string{
	"server.name":            `"web1"`,
	"server.https":           `":8443"`,
	"server.trusted_proxies": `["10.0.0.0/8", "192.0.2.7"]`,
	"tls.cert":               `"certs/example.com.pem"`,
	"tls.key":                `"certs/example.com.key"`,
	"tls.self_signed":        `true`,
	"tls.redirect_http":      `true`,
	"tls.hsts":               `"max-age=31536000; includeSubDomains"`,
	"tls.http3":              `true`,
	"session.keys":           `["NEW-HASH-KEY-base64", "NEW-BLOCK-KEY-base64", "OLD-HASH-KEY-base64", "OLD-BLOCK-KEY-base64"]`,
	"site.hosts":             `["example.com", "*.example.com"]`,
	"site.browse":            `true`,
	"site.follow_symlinks":   `true`,
	"site.error_pages":       `{404 = "404.html", 500 = "500.html"}`,
	"site.cert":              `"certs/shop.pem"`,
	"site.key":               `"certs/shop.key"`,
	"site.headers":           `{"X-Frame-Options" = "DENY", "X-Content-Type-Options" = "nosniff"}`,
	"site.dev":               `true`,
	"site.cgi.prefix":        `"/cgi-bin/"`,
	"site.cgi.dir":           `"cgi-bin"`,
	"site.cgi.ext":           `[".cgi", ".php"]`,
	"site.cgi.interpreters":  `{".php" = "php-cgi", ".py" = "python3 -u"}`,
	"site.cgi.env":           `{"APP_ENV" = "production"}`,
	"site.route.path":        `"/assets/*"`,
	"site.route.methods":     `["GET", "POST"]`,
	"site.route.scheme":      `"http"`,
	"site.route.headers":     `{"Cache-Control" = "public, max-age=31536000, immutable", "-Server" = ""}`,
	"site.route.allow":       `["10.0.0.0/8", "192.0.2.7"]`,
	"site.route.deny":        `["203.0.113.0/24"]`,
	"site.route.auth":        `"admin.htpasswd"`,
	"site.route.rate":        `"20/s"`,
	"site.route.burst":       `10`,
	"site.route.redirect":    `"https://example.com{uri}"`,
	"site.route.status":      `301`,
	"site.route.respond":     `403`,
	"site.route.rewrite":     `"/user.php?id={1}"`,
	"site.route.try_files":   `["{path}", "{path}/", "/index.html"]`,
	"site.route.upstream":    `"app"`,
	"cluster.enabled":        `true`,
	"cluster.advertise":      `"10.0.0.2"`,
	"cluster.join":           `["10.0.0.1:7946"]`,
	"cluster.secret":         `"output of shoal keygen"`,
	"cluster.peer_url":       `"http://10.0.0.2:8080"`,
	"cluster.public_url":     `"https://web2.example.com"`,
	"cluster.sticky":         `true`,
	"acme.enabled":           `true`,
	"acme.ca":                `"https://acme-staging-v02.api.letsencrypt.org/directory"`,
	"acme.ca_root":           `"pebble-ca.pem"`,
	"acme.email":             `"ops@example.com"`,
	"acme.challenges":        `["tls-alpn-01"]`,
}

func TestReference(t *testing.T) {
	docs, err := configFieldDocs(".")
	if err != nil {
		t.Fatal(err)
	}
	ref := buildReference(docs)
	for _, p := range ref.problems {
		t.Error(p)
	}
	got := ref.markdown()
	if *updateReference {
		if err := os.WriteFile(referencePath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("%v (make it: go test ./server/config -run TestReference -update)", err)
	}
	if string(want) != got {
		t.Errorf("docs/configuration.md does not match the config structs (first difference: %s); rewrite it with: go test ./server/config -run TestReference -update",
			firstDifference(string(want), got))
	}
}

// TestReferenceCatchesDrift makes sure the comparison can fail: a field
// without a doc comment is reported, and a reloadNotes entry for a key
// that does not exist too.
func TestReferenceCatchesDrift(t *testing.T) {
	docs, err := configFieldDocs(".")
	if err != nil {
		t.Fatal(err)
	}
	delete(docs, "Server.HTTP")
	ref := buildReference(docs)
	if len(ref.problems) != 1 || !strings.Contains(ref.problems[0], "server.http") {
		t.Errorf("a field without a doc comment must be the one problem reported, got %q", ref.problems)
	}
	reloadNotes["server.no_such_key"] = "x"
	defer delete(reloadNotes, "server.no_such_key")
	docs, _ = configFieldDocs(".")
	ref = buildReference(docs)
	if len(ref.problems) != 1 || !strings.Contains(ref.problems[0], "server.no_such_key") {
		t.Errorf("a reload note for an unknown key must be reported, got %q", ref.problems)
	}
}

// configFieldDocs reads the doc comment (or line comment) of every struct
// field declared in the package's non-test files, keyed "Type.Field".
func configFieldDocs(dir string) (map[string]string, error) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	docs := map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("reference: %w", err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return false
			}
			for _, field := range st.Fields.List {
				text := field.Doc.Text()
				if text == "" {
					text = field.Comment.Text()
				}
				for _, id := range field.Names {
					docs[ts.Name.Name+"."+id.Name] = strings.Join(strings.Fields(text), " ")
				}
			}
			return false
		})
	}
	return docs, nil
}

// refTable is one [table] or [[array]] of the reference.
type refTable struct {
	header string // "[server]" or "[[site.cgi]]"
	parent string // "[[site]]" for [[site.cgi]]
	keys   []refKey
}

type refKey struct {
	path, name, typ, def, reload, doc, example string
}

type reference struct {
	tables   []refTable
	problems []string
}

func buildReference(docs map[string]string) *reference {
	r := &reference{}
	known := map[string]bool{}
	r.walk(reflect.ValueOf(*Defaults()), "", "", "", docs, known)
	for key := range reloadNotes {
		if !known[key] {
			r.problems = append(r.problems, fmt.Sprintf("reloadNotes names %s, which is no config key", key))
		}
	}
	for key := range referenceExamples {
		if !known[key] {
			r.problems = append(r.problems, fmt.Sprintf("referenceExamples names %s, which is no config key", key))
		}
	}
	sort.Strings(r.problems)
	return r
}

// walk adds the table whose defaults are v (a struct) at path, then the
// tables nested in it. header is how the table opens ("[server]",
// "[[site]]"); parent is the array element it sits in, if any.
func (r *reference) walk(v reflect.Value, path, header, parent string, docs map[string]string, known map[string]bool) {
	t := v.Type()
	var nested []func()
	table := refTable{header: header, parent: parent}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := tomlName(f)
		if name == "" {
			continue
		}
		key := joinKey(path, name)
		fv := v.Field(i)
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]():
			nested = append(nested, func() { r.walk(fv, key, "["+key+"]", "", docs, known) })
			continue
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			elem := reflect.New(f.Type.Elem()).Elem()
			if mk, ok := elementDefaults[f.Type.Elem()]; ok {
				elem = reflect.ValueOf(mk())
			} else {
				r.problems = append(r.problems, fmt.Sprintf("[[%s]]: no default element for %s: add its DefaultX to elementDefaults in server/config/reference_test.go", key, f.Type.Elem()))
			}
			inside := ""
			if strings.HasPrefix(header, "[[") {
				inside = header // [[site.cgi]] is written under its [[site]]
			}
			nested = append(nested, func() { r.walk(elem, key, "[["+key+"]]", inside, docs, known) })
			continue
		}
		known[key] = true
		doc := docs[t.Name()+"."+f.Name]
		if doc == "" {
			r.problems = append(r.problems, fmt.Sprintf("%s (%s.%s in server/): no doc comment, so no description for the reference", key, t.Name(), f.Name))
		}
		reload := reloadNotes[key]
		if reload == "" {
			reload = reloadDefault
		}
		def := tomlValue(fv)
		example := referenceExamples[key]
		if example == "" {
			example = def
		}
		table.keys = append(table.keys, refKey{path: key, name: name, typ: tomlType(f.Type), def: def,
			reload: reload, doc: describe(doc, f.Name, name), example: example})
	}
	if len(table.keys) > 0 {
		r.tables = append(r.tables, table)
	}
	for _, n := range nested {
		n()
	}
}

// describe turns a Go doc comment ("MaxAge is the cookie's lifetime.")
// into the reference's sentence ("`max_age` is the cookie's lifetime.").
func describe(doc, field, key string) string {
	if rest, ok := strings.CutPrefix(doc, field+" "); ok {
		return "`" + key + "` " + rest
	}
	return doc
}

func joinKey(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// tomlName is the key of a field: its toml tag; an array of tables that
// is decoded by hand (tag "-") goes by its lower-cased field name.
func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := strings.Split(f.Tag.Get("toml"), ",")[0]
	if tag == "-" {
		// An array of tables decoded by hand names its key in a table tag.
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			return f.Tag.Get("table")
		}
		return ""
	}
	return tag
}

func tomlType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return `duration (a string such as "10s" or "1m30s")`
	case reflect.TypeFor[Size]():
		return `size (bytes, or a string such as "64KiB" or "32MiB")`
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "float"
	case reflect.Slice:
		return "array of " + tomlType(t.Elem()) + "s"
	case reflect.Map:
		return "table of " + tomlType(t.Elem()) + "s"
	}
	return t.String()
}

// tomlValue writes v as a TOML value, durations and sizes as a person
// would write them.
func tomlValue(v reflect.Value) string {
	switch v.Type() {
	case reflect.TypeFor[time.Duration]():
		return strconv.Quote(shortDuration(time.Duration(v.Int())))
	case reflect.TypeFor[Size]():
		return sizeString(v.Int())
	}
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = tomlValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		keys := v.MapKeys()
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, strconv.Quote(fmt.Sprint(k.Interface()))+" = "+tomlValue(v.MapIndex(k)))
		}
		sort.Strings(parts)
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v.Interface())
}

func sizeString(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.Quote(strconv.FormatInt(n/u.mult, 10) + u.suffix)
		}
	}
	return strconv.FormatInt(n, 10)
}

func (r *reference) markdown() string {
	var b strings.Builder
	b.WriteString(referenceIntro)
	b.WriteString("\n## Every key with its default\n\n```toml\n")
	for i, t := range r.tables {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintln(&b, t.header)
		for _, k := range t.keys {
			fmt.Fprintf(&b, "%s = %s\n", k.name, k.def)
		}
	}
	b.WriteString("```\n")
	for _, t := range r.tables {
		fmt.Fprintf(&b, "\n## %s\n", t.header)
		for _, k := range t.keys {
			fmt.Fprintf(&b, "\n### %s\n\n%s\n\n", k.path, k.doc)
			fmt.Fprintf(&b, "- Type: %s\n- Default: `%s`\n- Reload: %s\n\n", k.typ, k.def, k.reload)
			b.WriteString("```toml\n")
			if t.parent != "" {
				fmt.Fprintln(&b, t.parent)
			}
			fmt.Fprintf(&b, "%s\n%s = %s\n```\n", t.header, k.name, k.example)
		}
	}
	return b.String()
}

func firstDifference(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: file has %q, code gives %q", i+1, x, y)
		}
	}
	return "none"
}

const referenceIntro = `# Configuration reference

<!-- Generated from server/config/config.go by TestReference: do not edit by
hand. Change a field's doc comment, its default or the tables in
server/config/reference_test.go, then run: go test ./server/config -run TestReference -update -->

One TOML file configures a node: ` + "`shoal -config FILE`" + `, else ` + "`./config.toml`" + `
when it exists, else the built-in defaults (serve ` + "`./www`" + ` on ` + "`:8080`" + `).
Flags override the file (see [getting started](getting-started.md#command-line)).

- Durations are Go strings: ` + "`\"10s\"`, `\"1m30s\"`" + `. An integer is refused (TOML would
  read ` + "`timeout = 30`" + ` as 30 nanoseconds, never what was meant).
- Sizes are integers (bytes) or strings with a unit: ` + "`\"64KiB\"`, `\"32MiB\"`, `\"1GiB\"`" + `
  (binary), ` + "`\"1KB\"`, `\"1MB\"`" + ` (decimal), ` + "`\"64K\"`/`\"32M\"`" + ` (binary, as in nginx).
- Relative paths are resolved against the config file's folder (the working
  directory when running on built-in defaults; ` + "`-root`" + ` is relative to the
  working directory).
- Only the keys on this page exist. Any other key, a wrong type, a bad
  duration or size, or a missing file is an error at start, placed at
  ` + "`file:line:column`" + ` with the key; ` + "`shoal check`" + ` prints every such error.
- The first ` + "`[[site]]`" + ` is the default virtual host; each ` + "`[[site.cgi]]`" + ` belongs to
  the ` + "`[[site]]`" + ` above it.
- "Reload" says what a SIGHUP (or ` + "`POST /api/reload`" + `) does with a changed
  value; see [operations](operations.md#reload).
`
