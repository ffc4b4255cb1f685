package admin

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
)

// statusFiles is the status page and its assets. Everything the page needs
// is here, so it works offline and under a CSP that allows only 'self'.
//
//go:embed status
var statusFiles embed.FS

// statusPage is parsed once; it holds no state, only the page's text.
var statusPage = template.Must(template.ParseFS(statusFiles, "status/index.html"))

type pageData struct {
	Self      string
	Version   string
	Sites     []Site
	Listeners []string
	Certs     []Certificate
}

// page renders the shell of the status page: this node's sites and
// listeners. The member table is filled in by status.js from /api/cluster.
func (s *adminServer) page(w http.ResponseWriter, r *http.Request) {
	data := pageData{Version: s.Version, Sites: s.Sites, Listeners: s.Listeners, Certs: s.certList()}
	if s.Describe != nil {
		data.Sites, data.Listeners = s.Describe()
	}
	if s.View != nil {
		data.Self = s.View.Self()
	}
	var buf bytes.Buffer
	if err := statusPage.Execute(&buf, data); err != nil {
		s.logger().Error("status page failed", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// static serves the page's assets under /static/. Only known asset types
// are served: the page template and folder listings are not.
func (s *adminServer) static() http.Handler {
	sub, err := fs.Sub(statusFiles, "status")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch path.Ext(r.URL.Path) {
		case ".css", ".js", ".svg":
		default:
			notFound(w, r)
			return
		}
		// Assets change only with the binary; revalidating is cheap on loopback.
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
