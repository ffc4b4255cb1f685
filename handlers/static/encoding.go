package static

import (
	"strconv"
	"strings"
)

// Content codings shoal produces or serves from sidecar files, in order of
// preference when a client rates them equally.
const (
	encBrotli   = "br"
	encZstd     = "zstd"
	encGzip     = "gzip"
	encIdentity = ""
)

// acceptEncoding returns the q-value the client gives each of br, zstd,
// gzip (0 = not acceptable), following RFC 9110 12.5.3 including "*".
func acceptEncoding(header string) (q map[string]float64) {
	q = map[string]float64{}
	star := -1.0
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		v := 1.0
		if p := strings.TrimSpace(params); strings.HasPrefix(p, "q=") {
			f, err := strconv.ParseFloat(p[2:], 64)
			if err != nil || f < 0 || f > 1 {
				continue
			}
			v = f
		}
		if name == "*" {
			star = v
			continue
		}
		if name == "x-gzip" {
			name = encGzip
		}
		q[name] = v
	}
	if star >= 0 {
		for _, e := range []string{encBrotli, encZstd, encGzip} {
			if _, ok := q[e]; !ok {
				q[e] = star
			}
		}
	}
	return q
}

// chooseEncoding picks the best of the codings available (in preference
// order) for the Accept-Encoding header; "" means identity.
func chooseEncoding(header string, available []string) string {
	if header == "" || len(available) == 0 {
		return encIdentity
	}
	// Fast path for the common browser header with no q-values.
	if !strings.ContainsAny(header, ";*") {
		for _, e := range available {
			if hasToken(header, e) {
				return e
			}
		}
		return encIdentity
	}
	q := acceptEncoding(header)
	best, bestQ := encIdentity, 0.0
	for _, e := range available {
		if v := q[e]; v > bestQ {
			best, bestQ = e, v
		}
	}
	return best
}

// hasToken reports whether the comma-separated list contains tok.
func hasToken(list, tok string) bool {
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ",")
		if strings.EqualFold(strings.TrimSpace(item), tok) {
			return true
		}
	}
	return false
}
