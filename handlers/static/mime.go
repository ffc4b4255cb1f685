package static

import (
	"mime"
	"path"
	"strings"
)

// builtinTypes answers for common extensions without asking the system's
// mime.types, so a page's type does not depend on the machine.
var builtinTypes = map[string]string{
	".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
	".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
	".mjs": "text/javascript; charset=utf-8", ".json": "application/json",
	".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8",
	".xml": "application/xml", ".svg": "image/svg+xml", ".png": "image/png",
	".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
	".webp": "image/webp", ".avif": "image/avif", ".ico": "image/x-icon",
	".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf",
	".pdf": "application/pdf", ".wasm": "application/wasm", ".zip": "application/zip",
	".gz": "application/gzip", ".mp4": "video/mp4", ".webm": "video/webm",
	".mp3": "audio/mpeg", ".csv": "text/csv; charset=utf-8", ".map": "application/json",
	".webmanifest": "application/manifest+json", ".rss": "application/rss+xml",
	".atom": "application/atom+xml", ".yaml": "text/yaml; charset=utf-8",
}

// contentType is the Content-Type for a file name; unknown types are
// application/octet-stream (nginx's default_type) rather than sniffed.
func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := builtinTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		if strings.HasPrefix(t, "text/") && !strings.Contains(t, "charset") {
			t += "; charset=utf-8"
		}
		return t
	}
	return "application/octet-stream"
}

// compressible reports whether a Content-Type is worth compressing.
func compressible(ctype string) bool {
	t, _, _ := strings.Cut(ctype, ";")
	t = strings.TrimSpace(t)
	if strings.HasPrefix(t, "text/") {
		return true
	}
	switch t {
	case "application/json", "application/xml", "image/svg+xml", "application/javascript",
		"application/manifest+json", "application/rss+xml", "application/atom+xml", "application/wasm":
		return true
	}
	return false
}
