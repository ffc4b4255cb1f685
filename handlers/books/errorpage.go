package books

import (
	"fmt"
	"html"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
)

// ErrorPages writes error responses for one site: the site's own page for
// a status when it configured one (error_pages), else a short generic page.
// Bodies never echo an internal error.
type ErrorPages struct {
	// Root is the folder the page paths are relative to.
	Root string
	// Pages maps a status to a file under Root; nil means none.
	Pages map[int]string
}

// Serve writes status with its error page. Headers already set on w (such
// as Allow or Retry-After) are kept; validators and encodings are removed
// because the body is no longer the resource.
func (e *ErrorPages) Serve(w http.ResponseWriter, r *http.Request, status int) {
	h := w.Header()
	for _, k := range []string{"ETag", "Last-Modified", "Content-Encoding", "Accept-Ranges", "Content-Length"} {
		h.Del(k)
	}
	body := e.body(status)
	for _, f := range PageFields(status) {
		h.Set(f[0], f[1])
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// PageFields are the header fields an error page goes out with, besides
// its length.
func PageFields(status int) [][2]string {
	f := [][2]string{{"Content-Type", "text/html; charset=utf-8"}, {"X-Content-Type-Options", "nosniff"}}
	if status >= 500 || status == http.StatusNotFound {
		f = append(f, [2]string{"Cache-Control", "no-store"})
	}
	return f
}

// Page is the body Serve writes for status.
func (e *ErrorPages) Page(status int) []byte { return e.body(status) }

func (e *ErrorPages) body(status int) []byte {
	if e != nil {
		if page, ok := e.Pages[status]; ok {
			if b, err := os.ReadFile(filepath.Join(e.Root, filepath.FromSlash(page))); err == nil {
				return b
			}
		}
	}
	return GenericErrorPage(status)
}

// GenericErrorPage is the page shown for status when a site has none.
func GenericErrorPage(status int) []byte {
	text := html.EscapeString(fmt.Sprintf("%d %s", status, http.StatusText(status)))
	return []byte("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>" + text +
		"</title></head><body><h1>" + text + "</h1><hr><p>shoal</p></body></html>\n")
}
