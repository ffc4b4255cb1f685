package server

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"shoal/cluster"
	"shoal/server/config"
)

// maxSiteEntries bounds the files and folders one site's hash walks, so a
// huge root costs a bounded time per minute; past it the hash covers the
// first entries in walk order (still the same on identical trees).
const maxSiteEntries = 200_000

// siteHashes is each site's drift hash by site label: the site's config
// and the names and sizes of the files under its root, templates and CGI
// folders, so two nodes hash a site alike exactly when they would answer
// its requests alike. Sites sharing a label share one hash over all of
// them. Dotfiles (never served) are left out: a .git folder differing
// between checkouts is no drift.
func siteHashes(cfg *config.Config) map[string]uint32 {
	sums := map[string]hash.Hash{}
	var order []string
	for _, sc := range cfg.Sites {
		label := siteLabel(sc)
		h, ok := sums[label]
		if !ok {
			h = sha256.New()
			sums[label] = h
			order = append(order, label)
		}
		hashSite(h, cfg, sc)
	}
	out := make(map[string]uint32, len(sums))
	for _, label := range order {
		out[label] = binary.BigEndian.Uint32(sums[label].Sum(nil))
	}
	return out
}

// hashSite writes one site's config and file list into h.
func hashSite(h hash.Hash, cfg *config.Config, sc config.Site) {
	root := sc.Root
	// Where a node keeps the site is its own business; what is there is
	// hashed below.
	inRoot := func(p string) (string, bool) {
		r, err := filepath.Rel(root, p)
		if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			return p, false
		}
		return r, true
	}
	rel := func(p string) string {
		if r, ok := inRoot(p); ok {
			return "root:" + r
		}
		if r, err := filepath.Rel(cfg.Dir, p); err == nil && p != "" && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	norm := sc
	norm.Root, norm.Templates, norm.Cert, norm.Key = "", rel(sc.Templates), rel(sc.Cert), rel(sc.Key)
	norm.CGI = append([]config.CGI(nil), sc.CGI...)
	for i := range norm.CGI {
		norm.CGI[i].Dir = rel(sc.CGI[i].Dir)
	}
	b, _ := json.Marshal(norm) // plain data: cannot fail
	fmt.Fprintf(h, "site %d\n%s\n", len(b), b)

	budget := maxSiteEntries
	hashTree(h, "root", root, &budget)
	if _, ok := inRoot(sc.Templates); !ok && sc.Templates != "" {
		hashTree(h, "templates", sc.Templates, &budget)
	}
	for i, c := range sc.CGI {
		if _, ok := inRoot(c.Dir); !ok && c.Dir != "" {
			hashTree(h, fmt.Sprintf("cgi %d", i), c.Dir, &budget)
		}
	}
}

// hashTree writes the name and size of every entry under dir (not
// following symlinks, skipping dot names) into h, at most *budget of
// them. A folder that cannot be read is written as such, so it differs
// from an empty one.
func hashTree(h hash.Hash, role, dir string, budget *int) {
	fmt.Fprintf(h, "tree %s\n", role)
	errStop := errors.New("budget spent")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(h, "unreadable %q\n", strings.TrimPrefix(p, dir))
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		name := strings.TrimPrefix(p, dir)
		if strings.HasPrefix(d.Name(), ".") && p != dir {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if *budget--; *budget < 0 {
			return errStop
		}
		var size int64
		if !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				size = fi.Size()
			}
		}
		fmt.Fprintf(h, "%q %s %d\n", filepath.ToSlash(name), d.Type().String(), size)
		return nil
	})
	if errors.Is(err, errStop) {
		fmt.Fprintf(h, "truncated\n")
	}
}

// watchSites makes c publish the hashes of the config cfg returns now,
// every minute, and at each refreshSites (after a reload), so peers stop
// sending a site's requests here once its files or config differ from
// theirs.
func watchSites(c *cluster.Cluster, cfg func() *config.Config) {
	if c != nil {
		c.WatchSites(time.Minute, func() map[string]uint32 { return siteHashes(cfg()) })
	}
}

// refreshSites recomputes the site hashes after a reload.
func (cr *clusterRef) refreshSites() {
	if c := cr.get(); c != nil {
		c.RefreshSites()
	}
}
