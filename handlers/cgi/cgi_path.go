package cgi

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// cgiState is what a CGI works out once from its options.
type cgiState struct {
	prefix       string // with its trailing slash; "" when there is no prefix mapping
	dir, realDir string // Dir made absolute, and with symlinks resolved
	program      string // Program made absolute; "" when the prefix maps to Dir
	follow       bool   // FollowSymlinks
	root         string // Root made absolute
	realRoot     string
	exts         []string            // lower case
	interp       map[string][]string // lower-case extension -> program and arguments
	interpErr    map[string]string   // extensions whose program was not found, and why
	env          []string            // the variables every request shares
	slots        chan struct{}
	timeout      time.Duration
	maxTime      time.Duration
	grace        time.Duration
	queueTimeout time.Duration
	maxBody      int64
	bufs         sync.Pool // of *cgiBuffers

	nullOnce sync.Once
	null     *os.File // /dev/null, every bodiless script's stdin; closed by its cleanup once unreachable
	nullErr  error
}

// devNull returns /dev/null, opened once for all the scripts of a mapping.
func (st *cgiState) devNull() (*os.File, error) {
	st.nullOnce.Do(func() {
		st.null, st.nullErr = os.Open(os.DevNull)
		if st.nullErr != nil {
			st.nullErr = fmt.Errorf("cgi: %w", st.nullErr)
		}
	})
	return st.null, st.nullErr
}

// script is one request's script, as RFC 3875 names its parts.
type cgiScript struct {
	name     string // SCRIPT_NAME: the URL path of the script
	file     string // SCRIPT_FILENAME
	pathInfo string // PATH_INFO: the URL path after the script, "" when none
	ext      string // lower-case extension of file
	argv     []string
}

func (h *Handler) state() *cgiState {
	h.once.Do(func() { h.st = h.newState() })
	return h.st
}

func (h *Handler) newState() *cgiState {
	st := &cgiState{
		timeout:      cgiDuration(h.Timeout, 30*time.Second),
		maxTime:      h.MaxTime,
		follow:       h.FollowSymlinks,
		grace:        cgiDuration(h.KillGrace, 2*time.Second),
		queueTimeout: cgiDuration(h.QueueTimeout, time.Second),
		maxBody:      h.MaxBodyBytes,
		interp:       map[string][]string{},
		interpErr:    map[string]string{},
	}
	if st.maxBody <= 0 {
		st.maxBody = 32 << 20
	}
	n := h.MaxConcurrent
	if n <= 0 {
		n = 16
	}
	st.slots = make(chan struct{}, n)
	st.root, st.realRoot = cgiAbsReal(h.Root)
	if h.Prefix != "" && h.Dir == "" && h.Program == "" {
		h.logger().Error("cgi: prefix without dir or program; the prefix mapping is off", "prefix", h.Prefix)
	}
	if h.Prefix != "" && (h.Dir != "" || h.Program != "") {
		st.prefix = h.Prefix
		if !strings.HasSuffix(st.prefix, "/") {
			st.prefix += "/"
		}
		if h.Program != "" {
			st.program, _ = cgiAbsReal(h.Program)
		} else {
			st.dir, st.realDir = cgiAbsReal(h.Dir)
		}
	}
	for _, e := range h.Ext {
		st.exts = append(st.exts, strings.ToLower(e))
	}
	for ext, prog := range h.Interpreters {
		ext = strings.ToLower(ext)
		args := strings.Fields(prog)
		if len(args) == 0 {
			st.interpErr[ext] = "empty interpreter"
			continue
		}
		path, err := exec.LookPath(args[0])
		if err != nil {
			st.interpErr[ext] = err.Error()
			continue
		}
		args[0] = path
		st.interp[ext] = args
	}
	st.env = h.baseEnv(st.root)
	return st
}

func cgiDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// cgiAbsReal returns p made absolute, and also with its symlinks resolved,
// the form a resolved script path is compared against.
func cgiAbsReal(p string) (abs, real string) {
	abs, err := filepath.Abs(p)
	if err != nil {
		abs = filepath.Clean(p)
	}
	real, err = filepath.EvalSymlinks(abs)
	if err != nil {
		real = abs
	}
	return abs, real
}

// cgiReservedEnv are the names a site's env and pass_env cannot set, so a
// config can never spoof what the request says (besides every HTTP_*).
var cgiReservedEnv = map[string]bool{
	"AUTH_TYPE": true, "CONTENT_LENGTH": true, "CONTENT_TYPE": true, "GATEWAY_INTERFACE": true,
	"PATH_INFO": true, "PATH_TRANSLATED": true, "QUERY_STRING": true, "REMOTE_ADDR": true,
	"REMOTE_HOST": true, "REMOTE_IDENT": true, "REMOTE_USER": true, "REMOTE_PORT": true,
	"REQUEST_METHOD": true, "REQUEST_URI": true, "SCRIPT_NAME": true, "SCRIPT_FILENAME": true,
	"SERVER_NAME": true, "SERVER_PORT": true, "SERVER_PROTOCOL": true, "SERVER_SOFTWARE": true,
	"DOCUMENT_ROOT": true, "HTTPS": true, "REDIRECT_STATUS": true, "SHOAL_NODE": true,
}

func (h *Handler) baseEnv(root string) []string {
	env := []string{"GATEWAY_INTERFACE=CGI/1.1", "SERVER_SOFTWARE=shoal", "REDIRECT_STATUS=200", "DOCUMENT_ROOT=" + root}
	if h.NodeName != "" {
		env = append(env, "SHOAL_NODE="+h.NodeName)
	}
	usable := func(k string) bool {
		if k == "" || strings.ContainsAny(k, "=\x00") || cgiReservedEnv[k] || strings.HasPrefix(k, "HTTP_") {
			h.logger().Warn("cgi: env variable ignored: reserved or invalid", "name", k)
			return false
		}
		return true
	}
	for _, k := range slices.Sorted(maps.Keys(h.Env)) {
		if usable(k) {
			env = append(env, k+"="+strings.ReplaceAll(h.Env[k], "\x00", ""))
		}
	}
	for _, k := range h.PassEnv {
		if _, set := h.Env[k]; set || !usable(k) {
			continue
		}
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// extScriptEnd returns the end in p of the first path segment that has
// one of the extensions, or 0 when none has.
func (st *cgiState) extScriptEnd(p string) int {
	if len(st.exts) == 0 {
		return 0
	}
	for i := 0; i < len(p); {
		j := strings.IndexByte(p[i:], '/')
		end := len(p)
		if j >= 0 {
			end = i + j
		}
		if end > i && st.hasExt(p[i:end]) {
			return end
		}
		i = end + 1
	}
	return 0
}

func (st *cgiState) hasExt(name string) bool {
	for _, e := range st.exts {
		if len(name) > len(e) && strings.EqualFold(name[len(name)-len(e):], e) {
			return true
		}
	}
	return false
}

// resolve finds the script a URL path names, walking the file system one
// segment at a time so that the first regular file ends SCRIPT_NAME and
// the rest becomes PATH_INFO. It answers a status (and why) when there is
// no script to run.
func (st *cgiState) resolve(p string) (*cgiScript, int, string) {
	if strings.IndexByte(p, 0) >= 0 || !strings.HasPrefix(p, "/") || cgiDotSegment(p) {
		return nil, http.StatusNotFound, "unclean path"
	}
	if st.program != "" {
		switch {
		case strings.HasPrefix(p, st.prefix):
			return st.programScript(p[:len(st.prefix)-1], p[len(st.prefix)-1:])
		case p == st.prefix[:len(st.prefix)-1]:
			return st.programScript(p, "")
		}
	}
	if st.prefix != "" && st.program == "" {
		switch {
		case strings.HasPrefix(p, st.prefix):
			return st.walk(p, len(st.prefix), st.dir, st.realDir, -1)
		case p == st.prefix[:len(st.prefix)-1]:
			return nil, http.StatusForbidden, "cgi folder itself requested"
		}
	}
	if end := st.extScriptEnd(p); end > 0 {
		return st.walk(p, 1, st.root, st.realRoot, end)
	}
	return nil, http.StatusNotFound, "not a script of this mapping"
}

// programScript is the one program of a mapping, run for every path under
// its prefix: SCRIPT_NAME is the prefix, PATH_INFO the rest.
func (st *cgiState) programScript(name, pathInfo string) (*cgiScript, int, string) {
	sc := &cgiScript{name: name, file: st.program, pathInfo: pathInfo, ext: strings.ToLower(filepath.Ext(st.program))}
	fi, err := os.Stat(st.program)
	switch {
	case err != nil:
		return sc, http.StatusInternalServerError, "program: " + err.Error()
	case !fi.Mode().IsRegular():
		return sc, http.StatusInternalServerError, "program is not a regular file"
	case fi.Mode()&0o111 != 0:
		sc.argv = []string{st.program}
	}
	return sc, 0, ""
}

// walk looks up p[start:] below base. With want < 0 the first regular
// file found is the script; otherwise the script must end exactly at want.
func (st *cgiState) walk(p string, start int, base, realBase string, want int) (*cgiScript, int, string) {
	cur := base
	for i := start; i < len(p); {
		end := strings.IndexByte(p[i:], '/')
		if end < 0 {
			end = len(p)
		} else {
			end += i
		}
		seg := p[i:end]
		i = end + 1
		if seg == "" {
			continue
		}
		if seg[0] == '.' {
			return nil, http.StatusNotFound, "dotfile"
		}
		cur += "/" + seg
		fi, err := os.Lstat(cur)
		if err != nil {
			return nil, http.StatusNotFound, "no such file"
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			real, err := filepath.EvalSymlinks(cur)
			if err != nil {
				return nil, http.StatusNotFound, "dangling symlink"
			}
			if !st.follow && !cgiWithin(real, realBase) {
				return &cgiScript{file: cur}, http.StatusForbidden, "symlink leaves the folder"
			}
			if fi, err = os.Stat(real); err != nil {
				return nil, http.StatusNotFound, "no such file"
			}
		}
		switch {
		case fi.IsDir():
			if want >= 0 && end == want {
				return nil, http.StatusNotFound, "a folder, not a script"
			}
			continue
		case !fi.Mode().IsRegular():
			return &cgiScript{file: cur}, http.StatusForbidden, "not a regular file"
		case want >= 0 && end != want:
			return nil, http.StatusNotFound, "no such file"
		}
		sc := &cgiScript{name: p[:end], file: cur, pathInfo: p[end:], ext: strings.ToLower(filepath.Ext(seg))}
		if fi.Mode()&0o111 == 0 {
			sc.argv = nil // runnable decides: only an interpreter can run it
		} else {
			sc.argv = []string{cur}
		}
		return sc, 0, ""
	}
	return nil, http.StatusForbidden, "a folder, not a script"
}

// runnable picks how to start the script: its extension's interpreter,
// else the file itself when it is executable.
func (st *cgiState) runnable(sc *cgiScript) (int, string) {
	if args, ok := st.interp[sc.ext]; ok {
		sc.argv = append(slices.Clip(args), sc.file)
		return 0, ""
	}
	if why, ok := st.interpErr[sc.ext]; ok {
		return http.StatusInternalServerError, "interpreter for " + sc.ext + " not found: " + why
	}
	if sc.argv == nil {
		return http.StatusForbidden, "script is not executable and no interpreter is set for " + cgiExtLabel(sc.ext)
	}
	return 0, ""
}

func cgiExtLabel(ext string) string {
	if ext == "" {
		return "files without extension"
	}
	return ext
}

// cgiDotSegment reports a "." or ".." segment anywhere in p.
func cgiDotSegment(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '.' || (i > 0 && p[i-1] != '/') {
			continue
		}
		j := i + 1
		if j < len(p) && p[j] == '.' {
			j++
		}
		if j == len(p) || p[j] == '/' {
			return true
		}
	}
	return false
}

// cgiWithin reports whether path p is base or below it.
func cgiWithin(p, base string) bool {
	if base == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == base || (strings.HasPrefix(p, base) && p[len(base)] == '/')
}
