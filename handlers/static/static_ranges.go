package static

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// byteRange is one satisfiable range of a file.
type byteRange struct {
	start, length int64
}

func (r byteRange) contentRange(size int64) string {
	return fmt.Sprintf("bytes %d-%d/%d", r.start, r.start+r.length-1, size)
}

// maxRangeSpecs bounds the work on one Range header before merging.
const maxRangeSpecs = 200

// errUnsatisfiable: no range of the header overlaps the file.
var errUnsatisfiable = errors.New("range not satisfiable")

// parseRanges parses a Range header against size. It returns nil, nil when
// the header should be ignored (malformed, another unit, or too many
// ranges: the whole file is then sent, as RFC 9110 allows), and
// errUnsatisfiable when no range overlaps the file. Overlapping and
// adjacent ranges are merged.
func parseRanges(header string, size int64, maxRanges int) ([]byteRange, error) {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok {
		return nil, nil
	}
	parts := strings.Split(spec, ",")
	if len(parts) > maxRangeSpecs {
		return nil, nil
	}
	var ranges []byteRange
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		first, last, ok := strings.Cut(p, "-")
		if !ok {
			return nil, nil
		}
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		var r byteRange
		if first == "" {
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n < 0 {
				return nil, nil
			}
			if n == 0 {
				continue
			}
			n = min(n, size)
			r = byteRange{start: size - n, length: n}
		} else {
			start, err := strconv.ParseInt(first, 10, 64)
			if err != nil || start < 0 {
				return nil, nil
			}
			end := size - 1
			if last != "" {
				e, err := strconv.ParseInt(last, 10, 64)
				if err != nil || e < start {
					return nil, nil
				}
				end = min(e, size-1)
			}
			if start >= size {
				continue
			}
			r = byteRange{start: start, length: end - start + 1}
		}
		if r.length > 0 {
			ranges = append(ranges, r)
		}
	}
	if len(ranges) == 0 {
		return nil, errUnsatisfiable
	}
	ranges = mergeRanges(ranges)
	if len(ranges) > maxRanges {
		return nil, nil
	}
	return ranges, nil
}

// mergeRanges sorts ranges and joins those that overlap or touch, so that
// a header of many tiny ranges cannot multiply the response size.
func mergeRanges(rs []byteRange) []byteRange {
	sort.Slice(rs, func(i, j int) bool { return rs[i].start < rs[j].start })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.start <= last.start+last.length {
			if end := r.start + r.length; end > last.start+last.length {
				last.length = end - last.start
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func (s *Handler) serveRanges(w http.ResponseWriter, r *http.Request, e *fileEntry, header string) {
	h := w.Header()
	ranges, err := parseRanges(header, e.size, s.maxRange)
	if errors.Is(err, errUnsatisfiable) {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", e.size))
		s.opts.Errors.Serve(w, r, http.StatusRequestedRangeNotSatisfiable)
		return
	}
	if ranges == nil || (len(ranges) == 1 && ranges[0].length == e.size) {
		h["Content-Length"] = e.clen
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			s.writeRange(w, r, e, byteRange{0, e.size})
		}
		return
	}
	if len(ranges) == 1 {
		rg := ranges[0]
		h.Set("Content-Range", rg.contentRange(e.size))
		h.Set("Content-Length", strconv.FormatInt(rg.length, 10))
		w.WriteHeader(http.StatusPartialContent)
		if r.Method != http.MethodHead {
			s.writeRange(w, r, e, rg)
		}
		return
	}
	s.serveMultipart(w, r, e, ranges)
}

func (s *Handler) writeRange(w io.Writer, r *http.Request, e *fileEntry, rg byteRange) {
	if e.data != nil {
		w.Write(e.data[rg.start : rg.start+rg.length])
		return
	}
	s.copyFile(w, r, e.rel, rg.start, rg.length)
}

// serveMultipart writes multipart/byteranges with an exact Content-Length.
func (s *Handler) serveMultipart(w http.ResponseWriter, r *http.Request, e *fileEntry, ranges []byteRange) {
	var b [12]byte
	rand.Read(b[:])
	boundary := hex.EncodeToString(b[:])
	heads := make([]string, len(ranges))
	total := int64(0)
	for i, rg := range ranges {
		heads[i] = fmt.Sprintf("\r\n--%s\r\nContent-Type: %s\r\nContent-Range: %s\r\n\r\n",
			boundary, e.ctype[0], rg.contentRange(e.size))
		total += int64(len(heads[i])) + rg.length
	}
	tail := "\r\n--" + boundary + "--\r\n"
	total += int64(len(tail))
	h := w.Header()
	h.Set("Content-Type", "multipart/byteranges; boundary="+boundary)
	h.Set("Content-Length", strconv.FormatInt(total, 10))
	w.WriteHeader(http.StatusPartialContent)
	if r.Method == http.MethodHead {
		return
	}
	for i, rg := range ranges {
		io.WriteString(w, heads[i])
		s.writeRange(w, r, e, rg)
	}
	io.WriteString(w, tail)
}
