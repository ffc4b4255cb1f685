package static

import "strings"

// Has reports whether urlPath names something the static handler would
// serve with 200: a file, or for a path ending in "/" a folder with an
// index file (or a listing, when browse is on). try_files asks it.
func (s *Handler) Has(urlPath string) bool {
	rel, err := cleanURLPath(urlPath)
	if err != nil {
		return false
	}
	e, err := s.lookup(rel)
	if err != nil {
		return false
	}
	if !e.isDir {
		return !strings.HasSuffix(urlPath, "/")
	}
	if !strings.HasSuffix(urlPath, "/") {
		return false
	}
	return s.opts.Browse || s.fastIndex(urlPath, rel) != nil
}
