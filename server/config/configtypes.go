package config

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// typeProblem says in words what a value of the wrong TOML type should
// have been (`must be a string such as ":8080"`), for the field kinds a
// config uses; "" when the type fits or the field is of a kind it does not
// know (the decoder then has its say). toml's own message names Go types
// ("TOML value has type int64; destination has type string") and no key.
func (d *decoder) typeProblem(key string, field reflect.Value, prim toml.Primitive) string {
	var v any
	if err := d.md.PrimitiveDecode(prim, &v); err != nil {
		return ""
	}
	if t := field.Type(); t != durationType && t != reflect.TypeFor[Size]() && decodesItself(field) {
		return "" // its own UnmarshalTOML or UnmarshalText knows what it takes
	}
	example := exampleFor(key, field)
	switch t := field.Type(); {
	case t == durationType:
		if _, ok := v.(string); !ok {
			return "must be a duration string such as " + orDefault(example, `"30s"`)
		}
	case t == reflect.TypeFor[Size]():
		switch v.(type) {
		case string, int64:
		default:
			return `must be a size such as "64KiB" or a number of bytes`
		}
	case t.Kind() == reflect.String:
		if _, ok := v.(string); !ok {
			return "must be a string such as " + orDefault(example, `"..."`)
		}
	case t.Kind() == reflect.Bool:
		if _, ok := v.(bool); !ok {
			return "must be true or false"
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		if _, ok := v.(int64); !ok {
			return "must be a whole number such as " + orDefault(example, "1")
		}
	case t.Kind() == reflect.Float64:
		switch v.(type) {
		case float64, int64:
		default:
			return "must be a number such as " + orDefault(example, "0.5")
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		if !allStrings(v) {
			return "must be a list of strings such as " + orDefault(example, `["a", "b"]`)
		}
	case t.Kind() == reflect.Map && t.Elem().Kind() == reflect.String:
		m, ok := v.(map[string]any)
		if !ok {
			return "must be a table of strings such as " + orDefault(example, `{name = "value"}`)
		}
		for name, x := range m {
			if _, ok := x.(string); !ok {
				return fmt.Sprintf("%q must be a string, as every value of this table", name)
			}
		}
	}
	return ""
}

// decodesItself reports whether the field's type parses its own TOML
// value (as Size does), and may take more than one TOML type.
func decodesItself(field reflect.Value) bool {
	p := field.Addr().Interface()
	_, tu := p.(toml.Unmarshaler)
	_, xu := p.(encoding.TextUnmarshaler)
	return tu || xu
}

func allStrings(v any) bool {
	list, ok := v.([]any)
	if !ok {
		// toml gives []map[string]any for an array of tables.
		return false
	}
	for _, x := range list {
		if _, ok := x.(string); !ok {
			return false
		}
	}
	return true
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// exampleFor is a value to show for key: its built-in default when that
// says something, else a typical value for the keys whose default is
// empty.
func exampleFor(key string, field reflect.Value) string {
	if ex, ok := typeExamples[stripIndices(key)]; ok {
		return ex
	}
	def := defaultValue(key, field)
	switch x := def.(type) {
	case string:
		if x != "" {
			return strconv.Quote(x)
		}
	case time.Duration:
		if x > 0 {
			return strconv.Quote(shortDuration(x))
		}
	case int, int64:
		if fmt.Sprint(x) != "0" {
			return fmt.Sprint(x)
		}
	case float64:
		if x != 0 {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
	case []string:
		if len(x) > 0 {
			q := make([]string, len(x))
			for i, s := range x {
				q[i] = strconv.Quote(s)
			}
			return "[" + strings.Join(q, ", ") + "]"
		}
	}
	return ""
}

// shortDuration writes 30s rather than 30.000s or 0h0m30s.
func shortDuration(d time.Duration) string {
	s := d.String()
	for _, z := range []string{"m0s", "h0m"} {
		if strings.HasSuffix(s, z) {
			s = strings.TrimSuffix(s, z[1:])
		}
	}
	return s
}

// defaultValue is the built-in default of key, read from Defaults,
// DefaultSite and DefaultCGI by the same toml tags the decoder uses.
func defaultValue(key string, field reflect.Value) any {
	parts := strings.Split(stripIndices(key), ".")
	var root any
	switch {
	case len(parts) == 3 && parts[0] == "site" && parts[1] == "cgi":
		c := DefaultCGI()
		root, parts = &c, parts[2:]
	case len(parts) == 2 && parts[0] == "site":
		s := DefaultSite()
		root, parts = &s, parts[1:]
	default:
		root = Defaults()
	}
	rv := reflect.ValueOf(root).Elem()
	for _, p := range parts {
		f, ok := fieldByTag(rv, p)
		if !ok {
			return nil
		}
		rv = f
	}
	if rv.Type() != field.Type() || !rv.CanInterface() {
		return nil
	}
	return rv.Interface()
}

func fieldByTag(rv reflect.Value, tag string) (reflect.Value, bool) {
	if rv.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	for i := 0; i < rv.NumField(); i++ {
		if strings.Split(rv.Type().Field(i).Tag.Get("toml"), ",")[0] == tag {
			return rv.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// typeExamples are shown for keys whose default is empty or says little.
var typeExamples = map[string]string{
	"server.name":            `"node-a"`,
	"server.https":           `":8443"`,
	"server.trusted_proxies": `["10.0.0.0/8"]`,
	"log.access":             `"stdout" or "/var/log/shoal/access.log"`,
	"tls.cert":               `"cert.pem"`,
	"tls.key":                `"key.pem"`,
	"tls.hsts":               `"max-age=31536000"`,
	"session.keys":           `["<base64 hash key>", "<base64 block key>"]`,
	"site.hosts":             `["example.com", "*.example.com"]`,
	"site.cert":              `"example.com.pem"`,
	"site.key":               `"example.com.key"`,
	"site.error_pages":       `{404 = "404.html"}`,
	"site.headers":           `{X-Frame-Options = "DENY"}`,
	"site.cgi.prefix":        `"/cgi-bin/"`,
	"site.cgi.dir":           `"cgi-bin"`,
	"site.cgi.ext":           `[".php"]`,
	"site.cgi.interpreters":  `{".php" = "php-cgi"}`,
	"site.cgi.env":           `{APP_ENV = "production"}`,
	"cluster.advertise":      `"10.0.0.5:7946"`,
	"cluster.join":           `["10.0.0.5:7946"]`,
	"cluster.secret":         `"<output of shoal keygen>"`,
	"cluster.peer_url":       `"http://10.0.0.5:8080"`,
	"cluster.public_url":     `"https://node-a.example.com"`,
}
