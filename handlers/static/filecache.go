package static

import (
	"io"
	"io/fs"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxCachedFile is the largest file kept in memory; bigger ones are
// streamed from disk (sendfile).
const maxCachedFile = 256 << 10

// minCompressSize: smaller bodies gain nothing from compression.
const minCompressSize = 512

// reloadEvery bounds how long an entry lives without a full, safe
// re-resolution of its path (symlink checks included); between those, a
// stat per request catches every content change.
const reloadEvery = 5 * time.Second

// fileEntry is one resolved path with the response headers precomputed.
type fileEntry struct {
	rel, abs string
	isDir    bool
	mod      time.Time
	size     int64
	ino      uint64
	modNs    int64
	loadedAt time.Time
	follow   bool

	etag    string
	etagH   []string
	ctype   []string
	lastMod []string
	clen    []string

	compressible bool
	data         []byte // the whole file when small; nil otherwise
	sidecars     []sidecar
	encodings    []string // codings offered, best first

	// gz and zst hold the compressed body of a cached file, made on the
	// first request that wants them.
	gz, zst atomic.Pointer[[]byte]
	// fast holds the prepared responses of Fast, by coding.
	fast    [fastVariants]atomic.Pointer[FastFile]
	fast304 atomic.Pointer[FastFile]
}

// sidecar is a precompressed file beside the original (x.css.br).
type sidecar struct {
	enc  string
	rel  string
	size int64
	data []byte
	etag []string
	clen []string
}

// fresh reports whether the file on disk is still what the entry holds.
func (e *fileEntry) fresh() bool {
	if time.Since(e.loadedAt) > reloadEvery {
		return false
	}
	var st syscall.Stat_t
	var err error
	if e.follow {
		err = syscall.Stat(e.abs, &st)
	} else {
		err = syscall.Lstat(e.abs, &st)
	}
	return err == nil && st.Ino == e.ino && st.Size == e.size && st.Mtim.Nano() == e.modNs
}

func (s *Handler) newEntry(rel, abs string, fi fs.FileInfo) (*fileEntry, error) {
	e := &fileEntry{rel: rel, abs: abs, isDir: fi.IsDir(), mod: fi.ModTime(), size: fi.Size(),
		loadedAt: time.Now(), follow: s.opts.FollowSymlinks}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.ino, e.modNs = st.Ino, st.Mtim.Nano()
	}
	if rel == "" {
		e.rel = "."
	}
	if e.isDir {
		return e, nil
	}
	if !fi.Mode().IsRegular() {
		return nil, errHidden
	}
	e.etag = `"` + strconv.FormatInt(e.modNs, 36) + "-" + strconv.FormatInt(e.size, 36) + `"`
	e.etagH = []string{e.etag}
	ct := contentType(rel)
	e.ctype = []string{ct}
	e.lastMod = []string{e.mod.UTC().Format(httpTimeFormat)}
	e.clen = []string{strconv.FormatInt(e.size, 10)}
	e.compressible = compressible(ct) && e.size >= minCompressSize
	if e.size <= maxCachedFile {
		data, err := s.readAll(e.rel, e.size)
		if err != nil {
			return nil, err
		}
		e.data = data
	}
	if s.opts.Compress && e.compressible {
		e.sidecars = s.findSidecars(e)
		for _, sc := range e.sidecars {
			e.encodings = append(e.encodings, sc.enc)
		}
		for _, enc := range []string{encZstd, encGzip} {
			if !containsString(e.encodings, enc) {
				e.encodings = append(e.encodings, enc)
			}
		}
	}
	return e, nil
}

const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

func (s *Handler) readAll(rel string, size int64) ([]byte, error) {
	f, err := s.root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, err
	}
	return data, nil
}

// findSidecars looks for x.br, x.zst and x.gz next to x.
func (s *Handler) findSidecars(e *fileEntry) []sidecar {
	var out []sidecar
	for _, c := range []struct{ enc, ext string }{{encBrotli, ".br"}, {encZstd, ".zst"}, {encGzip, ".gz"}} {
		rel := e.rel + c.ext
		fi, err := s.root.Lstat(rel)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		sc := sidecar{enc: c.enc, rel: rel, size: fi.Size(),
			etag: []string{e.etag[:len(e.etag)-1] + "-" + c.enc + `"`},
			clen: []string{strconv.FormatInt(fi.Size(), 10)}}
		if fi.Size() <= maxCachedFile {
			data, err := s.readAll(rel, fi.Size())
			if err != nil {
				continue
			}
			sc.data = data
		}
		out = append(out, sc)
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fileCache maps clean relative paths to entries, within a memory budget.
type fileCache struct {
	budget int64

	// mu guards entries and used.
	mu      sync.RWMutex
	entries map[string]*fileEntry
	used    int64
}

func newFileCache(budget int64) *fileCache {
	return &fileCache{budget: budget, entries: map[string]*fileEntry{}}
}

func (c *fileCache) get(rel string) *fileEntry {
	c.mu.RLock()
	e := c.entries[rel]
	c.mu.RUnlock()
	return e
}

func (c *fileCache) drop(rel string) {
	c.mu.Lock()
	if e, ok := c.entries[rel]; ok {
		c.used -= e.cost()
		delete(c.entries, rel)
	}
	c.mu.Unlock()
}

func (c *fileCache) put(rel string, e *fileEntry) {
	cost := e.cost()
	if cost > c.budget/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[rel]; ok {
		c.used -= old.cost()
	}
	// Map iteration order is random: evicting in it is random eviction.
	for k, old := range c.entries {
		if c.used+cost <= c.budget {
			break
		}
		c.used -= old.cost()
		delete(c.entries, k)
	}
	c.entries[rel] = e
	c.used += cost
}

// cost is the memory an entry holds, compressed bodies counted as the
// original (they are smaller and made later).
func (e *fileEntry) cost() int64 {
	n := int64(len(e.data)) + 512
	if e.compressible && e.data != nil {
		n += int64(len(e.data))
	}
	for _, sc := range e.sidecars {
		n += int64(len(sc.data))
	}
	return n
}
