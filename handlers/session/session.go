package session

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"shoal/handlers/books"
)

// Options configures a Store. Zero values are usable except
// Keys, which must hold at least one pair.
type Options struct {
	// Cookie is the cookie's name; "" means "shoal_session".
	Cookie string
	// Keys are hash/block key pairs, newest pair first. The newest pair
	// signs and encrypts; every pair decodes, so a rotated-out pair keeps
	// its sessions alive until they are re-issued under the newest one.
	// Hash keys are 32 or 64 bytes, block keys 16, 24 or 32 (AES).
	Keys [][]byte
	// MaxAge is the cookie's lifetime, counted from the last change of
	// the session; 0 means 24h.
	MaxAge time.Duration
	// SameSite is the cookie's SameSite attribute; 0 means Lax.
	SameSite http.SameSite
	// Logger receives debug lines for rejected cookies; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Store keeps a request's session in a signed and encrypted cookie
// (gorilla/sessions' CookieStore). It is stateless: any node holding the
// same keys reads the sessions any other wrote. Values are strings.
// A Store is safe for concurrent use.
type Store struct {
	name  string
	store *sessions.CookieStore
	log   *slog.Logger
}

// ErrTooLarge reports a session whose encoding does not fit in a
// cookie. It exists so callers answer 500 instead of sending a truncated
// cookie that would silently lose the session.
var ErrTooLarge = errors.New("session: too large for a cookie")

const defaultSessionCookie = "shoal_session"

// NewStore checks o's keys and returns a store using them.
func NewStore(o Options) (*Store, error) {
	if err := checkSessionKeys(o.Keys); err != nil {
		return nil, err
	}
	name := o.Cookie
	if name == "" {
		name = defaultSessionCookie
	}
	maxAge := o.MaxAge
	if maxAge <= 0 {
		maxAge = 24 * time.Hour
	}
	sameSite := o.SameSite
	if sameSite == 0 {
		sameSite = http.SameSiteLaxMode
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	cs := sessions.NewCookieStore(o.Keys...)
	// gorilla's defaults are unsafe here (no HttpOnly, SameSite=None,
	// 30 days): set every option explicitly.
	cs.Options = &sessions.Options{Path: "/", HttpOnly: true, SameSite: sameSite}
	cs.MaxAge(int(maxAge / time.Second))
	for _, c := range cs.Codecs {
		// The length limit is checked in Save, where it can be reported
		// as ErrTooLarge rather than as an opaque string.
		c.(*securecookie.SecureCookie).MaxLength(0).SetSerializer(formSerializer{})
	}
	return &Store{name: name, store: cs, log: log}, nil
}

func checkSessionKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("session: no keys")
	}
	if len(keys)%2 != 0 {
		return fmt.Errorf("session: %d keys: keys come in pairs (hash key, block key)", len(keys))
	}
	for i := 0; i < len(keys); i += 2 {
		if n := len(keys[i]); n != 32 && n != 64 {
			return fmt.Errorf("session: key %d (hash key of pair %d) is %d bytes, want 32 or 64", i+1, i/2+1, n)
		}
		if n := len(keys[i+1]); n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("session: key %d (block key of pair %d) is %d bytes, want 16, 24 or 32", i+2, i/2+1, n)
		}
	}
	return nil
}

// Codec is what handlers that pass the session to another program
// (CGI and FastCGI scripts, upstreams) need from it; Store implements it.
type Codec interface {
	// Encoded returns the request's session url-encoded ("" when empty).
	Encoded(r *http.Request) string
	// Replace replaces the session with the url-encoded values (an empty
	// value deletes a key) and sets the cookie on w; it is called before
	// the response headers are written.
	Replace(w http.ResponseWriter, r *http.Request, encoded string) error
}

// CookieName returns the name of the session cookie.
func (s *Store) CookieName() string { return s.name }

// Loaded is a request's session as Load read it from its cookie, for a
// caller that changes it and Saves it back (a template page's .Session).
type Loaded struct {
	Values map[string]string
	// Present: a cookie decoded, so an emptied session must be deleted.
	Present bool
	// Stale: it decoded with an older key pair and should be re-issued.
	Stale bool
}

// Load reads the session from r. Every cookie of the name is tried, in
// order, and the first that decodes wins: with `Cookie: s=A; s=B`, a
// planted cookie A (for example from a sibling subdomain) cannot shadow
// the real B. Anything that does not decode means an empty session.
func (s *Store) Load(r *http.Request) Loaded {
	for _, c := range r.CookiesNamed(s.name) {
		if len(c.Value) > maxCookieBytes {
			continue
		}
		for i, codec := range s.store.Codecs {
			values := make(map[any]any)
			err := codec.Decode(s.name, c.Value, &values)
			if err != nil {
				if i == len(s.store.Codecs)-1 {
					s.log.Debug("session cookie rejected", "cookie", s.name, "client", books.ClientIP(r), "err", err)
				}
				continue
			}
			return Loaded{Values: stringValues(values), Present: true, Stale: i > 0}
		}
	}
	return Loaded{Values: map[string]string{}}
}

func stringValues(m map[any]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		ks, ok := k.(string)
		if !ok {
			continue
		}
		switch v := v.(type) {
		case string:
			out[ks] = v
		default:
			out[ks] = fmt.Sprint(v)
		}
	}
	return out
}

// maxCookieBytes is what browsers keep of one cookie's name and value
// (RFC 6265 section 6.1 asks for at least 4096); more is dropped whole.
const maxCookieBytes = 4096

// Save sets the cookie holding values on w (before its headers are
// written), encoded with the newest key pair. An empty session deletes the
// cookie. The cookie is Secure when the client came over HTTPS.
func (s *Store) Save(w http.ResponseWriter, r *http.Request, values map[string]string) error {
	opts := *s.store.Options
	opts.Secure = cameOverHTTPS(r)
	if len(values) == 0 {
		opts.MaxAge = -1
		http.SetCookie(w, sessions.NewCookie(s.name, "", &opts))
		return nil
	}
	sess := sessions.NewSession(s.store, s.name)
	for k, v := range values {
		sess.Values[k] = v
	}
	encoded, err := s.store.Codecs[0].Encode(s.name, sess.Values)
	if err != nil {
		return fmt.Errorf("session: encode: %w", err)
	}
	if n := len(s.name) + 1 + len(encoded); n > maxCookieBytes {
		return fmt.Errorf("%w: %d bytes encoded, at most %d fit", ErrTooLarge, n, maxCookieBytes)
	}
	http.SetCookie(w, sessions.NewCookie(s.name, encoded, &opts))
	return nil
}

// cameOverHTTPS says whether the client used HTTPS: on this connection,
// or at the proxy or peer node in front (X-Forwarded-Proto). Believing the
// header is safe here whoever sent it: a Secure flag set in error only
// keeps a plain-HTTP client's own browser from storing the cookie, and a
// cookie must never lose Secure when the client's hop was HTTPS.
func cameOverHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}

// Encoded returns r's session url-encoded (keys sorted), "" when it is
// empty. This is how CGI scripts receive it (HTTP_SESSION, as Apache's
// mod_session).
func (s *Store) Encoded(r *http.Request) string {
	return encodeSession(s.Load(r).Values)
}

func encodeSession(values map[string]string) string {
	if len(values) == 0 {
		return ""
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	q := make(url.Values, len(values))
	for _, k := range keys {
		q.Set(k, values[k])
	}
	return q.Encode()
}

// Replace applies encoded (url-encoded, as a CGI script's
// X-Replace-Session header) to r's session: each key is set to its value,
// and an empty value deletes the key (mod_session's rules). The cookie is
// set on w only when something changed or the session needs re-issuing
// under the newest key; so call Replace before the headers are written.
// A session too large for a cookie returns an error wrapping
// ErrTooLarge and leaves w untouched; the caller logs it and
// answers 500.
func (s *Store) Replace(w http.ResponseWriter, r *http.Request, encoded string) error {
	q, err := url.ParseQuery(encoded)
	if err != nil {
		return fmt.Errorf("session: replace: %w", err)
	}
	cur := s.Load(r)
	changed := cur.Stale
	for k, vs := range q {
		v := vs[len(vs)-1]
		if old, ok := cur.Values[k]; v == "" {
			if ok {
				delete(cur.Values, k)
				changed = true
			}
		} else if !ok || old != v {
			cur.Values[k] = v
			changed = true
		}
	}
	if !changed || (len(cur.Values) == 0 && !cur.Present) {
		return nil
	}
	return s.Save(w, r, cur.Values)
}

// formSerializer encodes a session as url-encoded text (values are
// strings) inside securecookie's encryption, in place of gob: about five
// times faster, and smaller, which leaves more of the 4 KiB cookie for data.
type formSerializer struct{}

func (formSerializer) Serialize(src any) ([]byte, error) {
	m, ok := src.(map[any]any)
	if !ok {
		return nil, fmt.Errorf("session: cannot serialize %T", src)
	}
	values := make(map[string]string, len(m))
	for k, v := range m {
		ks, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("session: key %v is %T, want a string", k, k)
		}
		values[ks] = fmt.Sprint(v)
	}
	return []byte(encodeSession(values)), nil
}

func (formSerializer) Deserialize(src []byte, dst any) error {
	m, ok := dst.(*map[any]any)
	if !ok {
		return fmt.Errorf("session: cannot deserialize into %T", dst)
	}
	q, err := url.ParseQuery(string(src))
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	if *m == nil {
		*m = make(map[any]any, len(q))
	}
	for k, vs := range q {
		(*m)[k] = vs[len(vs)-1]
	}
	return nil
}

// Store is what CGI, FastCGI and the upstreams read and replace sessions
// through.
var _ Codec = (*Store)(nil)
