package forward

import (
	"errors"
	"net/http"
)

// ResponseWriterSink passes a response to an http.ResponseWriter.
type ResponseWriterSink struct {
	W http.ResponseWriter
	// Fix, when set, edits the header before it is written (a Location to
	// rewrite, a cookie to add).
	Fix func(h http.Header)
	rc  *http.ResponseController
}

// WriteHead copies the end-to-end fields and writes the status.
func (s *ResponseWriterSink) WriteHead(h *Head) error {
	CopyHeader(s.W.Header(), h)
	if s.Fix != nil {
		s.Fix(s.W.Header())
	}
	s.W.WriteHeader(h.Status)
	return nil
}

func (s *ResponseWriterSink) Write(p []byte) (int, error) { return s.W.Write(p) }

// End has nothing to finish: net/http frames the body.
func (s *ResponseWriterSink) End() error { return nil }

// Flush flushes through wrappers that Unwrap to a Flusher; a writer that
// cannot flush is no error (the answer still arrives, later).
func (s *ResponseWriterSink) Flush() error {
	if s.rc == nil {
		s.rc = http.NewResponseController(s.W)
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// CopyHeader adds h's end-to-end fields to dst under canonical names.
// The values share one slice allocation.
func CopyHeader(dst http.Header, h *Head) {
	vals := make([]string, len(h.Fields))
	for i, f := range h.Fields {
		if h.hop[i] {
			continue
		}
		k := canonical(f.Name)
		if prev, ok := dst[k]; ok {
			dst[k] = append(prev, f.Value)
			continue
		}
		vals[i] = f.Value
		dst[k] = vals[i : i+1 : i+1]
	}
}
