package static

import (
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// serveListing writes an HTML index of a folder: names escaped, folders
// first, then files, each sorted by name, with sizes and times. What is
// never served (dotfiles, templates, hidden files, disallowed links) is not
// listed either.
func (s *Handler) serveListing(w http.ResponseWriter, r *http.Request, rel string, dir *fileEntry) {
	f, err := s.root.Open(dir.rel)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type item struct {
		name, size, mod string
		dir             bool
	}
	var items []item
	for _, de := range entries {
		name := de.Name()
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmpl") {
			continue
		}
		if s.opts.Hidden != nil && s.opts.Hidden(filepath.Join(s.rootReal, filepath.FromSlash(rel), name)) {
			continue
		}
		if de.Type()&fs.ModeSymlink != 0 && !s.opts.FollowSymlinks {
			continue
		}
		info, err := s.root.Stat(path.Join(dir.rel, name))
		if err != nil {
			continue // a dangling or escaping link
		}
		it := item{name: name, dir: info.IsDir(), mod: info.ModTime().UTC().Format("2006-01-02 15:04")}
		if !it.dir {
			it.size = humanSize(info.Size())
		}
		items = append(items, it)
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].dir != items[j].dir {
			return items[i].dir
		}
		return items[i].name < items[j].name
	})
	title := html.EscapeString("Index of /" + rel)
	var b strings.Builder
	fmt.Fprintf(&b, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>%s</title>"+
		"<style>body{font-family:system-ui,sans-serif;margin:2em}td{padding:.2em 1em}td.s{text-align:right}</style></head>"+
		"<body><h1>%s</h1><table>\n", title, title)
	if rel != "" {
		b.WriteString("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n")
	}
	for _, it := range items {
		name := it.name
		if it.dir {
			name += "/"
		}
		href := (&url.URL{Path: name}).EscapedPath()
		if strings.Contains(it.name, ":") {
			href = "./" + href // a colon would read as a URL scheme
		}
		fmt.Fprintf(&b, "<tr><td><a href=\"%s\">%s</a></td><td class=\"s\">%s</td><td>%s</td></tr>\n",
			html.EscapeString(href), html.EscapeString(name), it.size, it.mod)
	}
	b.WriteString("</table></body></html>\n")
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// The page echoes file names an uploader chose: never let a browser
	// sniff it into anything but the HTML it is.
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		fmt.Fprint(w, b.String())
	}
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
