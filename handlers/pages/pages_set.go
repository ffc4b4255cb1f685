package pages

import (
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/yuin/goldmark"
)

// pageSet is one parse of a site's pages. It is never modified once
// published; a change makes a new set.
type pageSet struct {
	// root is the document root, opened so that nothing a page reads
	// (the page itself, include) can leave it, symlinks included. nil
	// when Root could not be opened.
	root *os.Root
	// skip is the templates folder's path inside root ("dir/"), whose
	// files are layouts, not pages; "" when it lies outside.
	skip string
	// base holds the parsed layouts and partials, cloned into each page;
	// nil when there are none. baseErr is their parse error.
	base    *template.Template
	baseErr error
	// layouts stamps the templates folder (names, sizes, times) so Dev
	// mode can tell when it changed.
	layouts string
	pages   map[string]*tmplPage // by slash path under root: "blog/post.tmpl"
	md      goldmark.Markdown
}

// tmplPage is one parsed page. Executing an html/template fixes its escaping
// and its functions, and functions such as query need the request, so
// each concurrent render uses its own clone (a tmplInstance) of master,
// kept for reuse in free.
type tmplPage struct {
	set    *pageSet
	rel    string // slash path under root
	file   string // path on disk, for logs and error messages
	master *template.Template
	err    error // parse error: the page answers 500
	mod    time.Time
	size   int64
	free   chan *tmplInstance
}

type tmplInstance struct {
	t  *template.Template
	st *renderState
}

func (pg *tmplPage) get() (*tmplInstance, error) {
	select {
	case in := <-pg.free:
		return in, nil
	default:
	}
	t, err := pg.master.Clone()
	if err != nil {
		return nil, fmt.Errorf("pages: clone %s: %w", pg.file, err)
	}
	st := &renderState{}
	t.Funcs(st.funcs())
	return &tmplInstance{t: t, st: st}, nil
}

func (pg *tmplPage) put(in *tmplInstance) {
	select {
	case pg.free <- in:
	default: // enough spares already
	}
}

// isPageName says whether a file name is a page source.
func isPageName(name string) bool { return strings.HasSuffix(name, ".tmpl") }

// loadSet parses the layouts and every page under Root. The set is usable
// even when err is not nil: pages that failed carry their error.
func (p *Handler) loadSet() (*pageSet, error) {
	s := &pageSet{pages: map[string]*tmplPage{}, md: newMarkdown()}
	var errs []error
	s.base, s.layouts, s.baseErr = p.parseLayouts()
	errs = append(errs, s.baseErr)

	root, err := os.OpenRoot(p.Root)
	if err != nil {
		return s, errors.Join(append(errs, fmt.Errorf("pages: root: %w", err))...)
	}
	s.root = root
	s.skip = insideRoot(p.Root, p.Templates)

	walkErr := fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			if rel == "." {
				return err
			}
			p.log().Warn("pages: skipping unreadable path", "root", p.Root, "path", rel, "err", err)
			return nil
		}
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") || (d.IsDir() && rel+"/" == s.skip) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !isPageName(d.Name()) {
			return nil
		}
		if pg := s.parsePage(p.Root, rel); pg != nil {
			s.pages[rel] = pg
			if pg.err != nil && pg.err != s.baseErr {
				errs = append(errs, pg.err)
			}
		}
		return nil
	})
	if walkErr != nil {
		errs = append(errs, fmt.Errorf("pages: walk %s: %w", p.Root, walkErr))
	}
	return s, errors.Join(errs...)
}

// parsePage reads and parses one page; nil means there is no such regular
// file inside root (gone, a folder, or a symlink leading out).
func (s *pageSet) parsePage(rootDir, rel string) *tmplPage {
	fi, err := s.root.Stat(rel)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	src, err := s.root.ReadFile(rel)
	if err != nil {
		return nil
	}
	pg := &tmplPage{
		set:  s,
		rel:  rel,
		file: filepath.Join(rootDir, filepath.FromSlash(rel)),
		mod:  fi.ModTime(),
		size: fi.Size(),
		free: make(chan *tmplInstance, 4*runtime.GOMAXPROCS(0)),
	}
	if s.baseErr != nil {
		pg.err = s.baseErr
		return pg
	}
	var t *template.Template
	if s.base != nil {
		t, err = s.base.Clone()
		if err != nil {
			pg.err = fmt.Errorf("pages: %s: %w", pg.file, err)
			return pg
		}
		t = t.New(pg.file)
	} else {
		t = template.New(pg.file).Funcs(placeholderFuncs())
	}
	if pg.master, err = t.Parse(string(src)); err != nil {
		pg.err = fmt.Errorf("pages: %w", err)
	}
	return pg
}

// parseLayouts parses every file in the templates folder into one set,
// each named by its path, so their {{define}}s are available to pages.
func (p *Handler) parseLayouts() (*template.Template, string, error) {
	if p.Templates == "" {
		return nil, "", nil
	}
	troot, err := os.OpenRoot(p.Templates)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("pages: templates: %w", err)
	}
	defer troot.Close()
	var stamp strings.Builder
	base := template.New("").Funcs(placeholderFuncs())
	n := 0
	err = walkFiles(troot, func(rel string, fi fs.FileInfo) error {
		src, err := troot.ReadFile(rel)
		if err != nil {
			return fmt.Errorf("pages: templates: %w", err)
		}
		stampFile(&stamp, rel, fi)
		n++
		name := filepath.Join(p.Templates, filepath.FromSlash(rel))
		if _, err := base.New(name).Parse(string(src)); err != nil {
			return fmt.Errorf("pages: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if n == 0 {
		return nil, "", nil
	}
	return base, stamp.String(), nil
}

// layoutStamp describes the templates folder as parseLayouts would stamp
// it, without parsing.
func (p *Handler) layoutStamp() string {
	if p.Templates == "" {
		return ""
	}
	troot, err := os.OpenRoot(p.Templates)
	if err != nil {
		return ""
	}
	defer troot.Close()
	var stamp strings.Builder
	walkFiles(troot, func(rel string, fi fs.FileInfo) error {
		stampFile(&stamp, rel, fi)
		return nil
	})
	return stamp.String()
}

func stampFile(b *strings.Builder, rel string, fi fs.FileInfo) {
	b.WriteString(rel)
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(fi.Size(), 10))
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(fi.ModTime().UnixNano(), 10))
	b.WriteByte('\n')
}

// walkFiles calls fn for each regular, non-hidden file under root, in
// lexical order.
func walkFiles(root *os.Root, fn func(rel string, fi fs.FileInfo) error) error {
	return fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		fi, err := root.Stat(rel)
		if err != nil || !fi.Mode().IsRegular() {
			return nil // a dangling or escaping symlink is no layout
		}
		return fn(rel, fi)
	})
}

// insideRoot returns the templates folder as a slash path under root with
// a trailing slash, or "" when it is not inside root.
func insideRoot(root, templates string) string {
	if templates == "" {
		return ""
	}
	ra, err1 := filepath.Abs(root)
	ta, err2 := filepath.Abs(templates)
	if err1 != nil || err2 != nil {
		return ""
	}
	rel, err := filepath.Rel(ra, ta)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return ""
	}
	return filepath.ToSlash(rel) + "/"
}

// pagePath maps a clean URL path to a page's slash path under root
// without its .tmpl suffix, or, for "/" and "dir/", to the folder ("" or
// "dir/") whose index is wanted.
// ok is false for anything that is not a clean page URL: dot segments,
// dotfiles, empty segments, NUL or backslash, and any segment naming a
// template source, so /about.tmpl and its variants never match.
func pagePath(urlPath string) (rel string, dir bool, ok bool) {
	if urlPath == "" || urlPath[0] != '/' || strings.ContainsAny(urlPath, "\x00\\") {
		return "", false, false
	}
	trimmed := urlPath[1:]
	dir = strings.HasSuffix(trimmed, "/") || trimmed == ""
	trimmed = strings.TrimSuffix(trimmed, "/")
	if trimmed == "" {
		return "", dir, dir
	}
	for seg := range strings.SplitSeq(trimmed, "/") {
		if seg == "" || seg[0] == '.' || strings.HasSuffix(strings.ToLower(seg), ".tmpl") {
			return "", false, false
		}
	}
	if dir {
		return trimmed + "/", true, true
	}
	return trimmed, false, true
}

func (p *Handler) index() []string {
	if p.Index == nil {
		return []string{"index.tmpl"}
	}
	return p.Index
}

// lookup finds the page for urlPath, nil when there is none.
func (p *Handler) lookup(urlPath string) *tmplPage {
	rel, dir, ok := pagePath(urlPath)
	if !ok {
		return nil
	}
	s := p.current()
	if p.Dev {
		s = p.refreshLayouts(s)
	}
	if s.root == nil {
		return nil
	}
	if !dir {
		return p.findPage(s, rel)
	}
	for _, name := range p.index() {
		if isPageName(name) {
			if pg := p.find(s, rel+name); pg != nil {
				return pg
			}
			continue
		}
		if fi, err := s.root.Stat(rel + name); err == nil && fi.Mode().IsRegular() {
			return nil // a static index file comes first
		}
	}
	return nil
}

// findPage is find for rel + ".tmpl", the name built on the stack: the
// HTTP/1.1 fast path asks this for every static file it answers (no page
// may shadow it), and should not pay a heap string for the question.
func (p *Handler) findPage(s *pageSet, rel string) *tmplPage {
	if p.Dev || len(rel) > 250 {
		return p.find(s, rel+".tmpl")
	}
	// skip ends in "/", which ".tmpl" has none of: rel alone decides.
	if s.skip != "" && strings.HasPrefix(rel, s.skip) {
		return nil
	}
	var buf [256]byte
	key := append(append(buf[:0], rel...), ".tmpl"...)
	return s.pages[string(key)]
}

func (p *Handler) find(s *pageSet, rel string) *tmplPage {
	if s.skip != "" && strings.HasPrefix(rel, s.skip) {
		return nil
	}
	if !p.Dev {
		return s.pages[rel]
	}
	return p.refreshPage(s, rel)
}

// refreshLayouts re-parses everything when the templates folder changed
// (Dev mode).
func (p *Handler) refreshLayouts(s *pageSet) *pageSet {
	if p.layoutStamp() == s.layouts {
		return s
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.set.Load(); cur != s {
		return cur // someone else re-parsed meanwhile
	}
	ns, err := p.loadSet()
	if err != nil {
		p.log().Error("pages: parse failed", "root", p.Root, "err", err)
	}
	p.set.Store(ns)
	return ns
}

// refreshPage re-reads one page when it was added, changed or removed
// since it was parsed (Dev mode).
func (p *Handler) refreshPage(s *pageSet, rel string) *tmplPage {
	pg := s.pages[rel]
	fi, err := s.root.Stat(rel)
	exists := err == nil && fi.Mode().IsRegular()
	if exists && pg != nil && pg.mod.Equal(fi.ModTime()) && pg.size == fi.Size() {
		return pg
	}
	if !exists && pg == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.set.Load()
	ns := *cur
	ns.pages = maps.Clone(cur.pages)
	var npg *tmplPage
	if exists {
		npg = cur.parsePage(p.Root, rel)
	}
	if npg == nil {
		delete(ns.pages, rel)
	} else {
		ns.pages[rel] = npg
	}
	p.set.Store(&ns)
	return npg
}
