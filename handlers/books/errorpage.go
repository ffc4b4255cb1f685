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
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	if status >= 500 || status == http.StatusNotFound {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

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
