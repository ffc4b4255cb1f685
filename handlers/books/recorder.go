package books

import (
	"io"
	"net/http"
	"time"
)

// Recorder wraps a ResponseWriter to learn the status and the bytes sent,
// for the access log and metrics, and to push the connection's write
// deadline forward on each write (send_timeout: a stalled reader is cut
// off, a long download is not). It keeps sendfile (ReadFrom) and exposes
// the wrapped writer to http.ResponseController through Unwrap.
type Recorder struct {
	http.ResponseWriter
	Status  int
	Bytes   int64
	Started time.Time
	// Defaults are headers added to the response when the handler did not
	// set them (a site's extra headers; a proxied peer's own win).
	Defaults http.Header
	// Edit, when set, changes the header last, once the status is known:
	// the routes' header rules, which win over the handler's and remove
	// what shoal itself sets (ETag, Last-Modified...), error pages and
	// 304s included.
	Edit func(http.Header)

	// sendTimeout is the longest wait for one write; 0: no deadline.
	sendTimeout time.Duration
	rc          *http.ResponseController
	extendedAt  time.Time
}

// NewRecorder wraps w. sendTimeout 0 leaves write deadlines alone. The
// server sets the first write deadline of each request (http.Server's
// WriteTimeout = send_timeout), so a small response costs no extra call
// here; a long one has its deadline moved forward as it goes.
func NewRecorder(w http.ResponseWriter, sendTimeout time.Duration) *Recorder {
	rec := &Recorder{}
	rec.Init(w, sendTimeout, time.Now())
	return rec
}

// Init is NewRecorder for a Recorder embedded in a caller's own struct
// (one allocation for a request's books), started at now.
func (rec *Recorder) Init(w http.ResponseWriter, sendTimeout time.Duration, now time.Time) {
	*rec = Recorder{ResponseWriter: w, Started: now, sendTimeout: sendTimeout, extendedAt: now}
}

// extend moves the write deadline sendTimeout past now. It is called at
// most every quarter of the timeout: a deadline a little early is harmless,
// a syscall per tiny write is not.
func (rec *Recorder) extend(now time.Time) {
	if rec.sendTimeout <= 0 || now.Sub(rec.extendedAt) < rec.sendTimeout/4 {
		return
	}
	if rec.rc == nil {
		rec.rc = http.NewResponseController(rec.ResponseWriter)
	}
	rec.extendedAt = now
	_ = rec.rc.SetWriteDeadline(now.Add(rec.sendTimeout))
}

// WriteHeader records the status.
func (rec *Recorder) WriteHeader(code int) {
	if rec.sendTimeout > 0 {
		rec.extend(time.Now()) // a slow handler's first answer must not meet a stale deadline
	}
	if rec.Status == 0 && code >= 200 {
		rec.Status = code
		rec.addDefaults()
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *Recorder) addDefaults() {
	if rec.Edit != nil {
		defer rec.Edit(rec.ResponseWriter.Header())
	}
	if len(rec.Defaults) == 0 {
		return
	}
	h := rec.ResponseWriter.Header()
	for k, v := range rec.Defaults {
		if _, set := h[k]; !set {
			h[k] = v
		}
	}
}

// implicitOK is the WriteHeader(200) a Write without one implies.
func (rec *Recorder) implicitOK() {
	if rec.Status == 0 {
		rec.Status = http.StatusOK
		rec.addDefaults()
	}
}

// Write records the bytes and extends the write deadline.
func (rec *Recorder) Write(b []byte) (int, error) {
	rec.implicitOK()
	if rec.sendTimeout > 0 && len(b) > 0 {
		rec.extend(time.Now())
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.Bytes += int64(n)
	return n, err
}

// ReadFrom keeps the sendfile path of the underlying writer, in chunks so
// the write deadline moves between them.
func (rec *Recorder) ReadFrom(src io.Reader) (int64, error) {
	rec.implicitOK()
	rf, ok := rec.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{rec}, src)
	}
	// sendfile unwraps one LimitedReader only, so chunk the innermost
	// reader rather than wrapping src again.
	inner, remaining := src, int64(-1)
	if lr, ok := src.(*io.LimitedReader); ok {
		inner, remaining = lr.R, lr.N
	}
	const chunk = 4 << 20
	var total int64
	var err error
	for remaining != 0 {
		if rec.sendTimeout > 0 {
			rec.extend(time.Now())
		}
		want := int64(chunk)
		if remaining > 0 && remaining < want {
			want = remaining
		}
		var n int64
		n, err = rf.ReadFrom(&io.LimitedReader{R: inner, N: want})
		total += n
		rec.Bytes += n
		if remaining > 0 {
			remaining -= n
		}
		if err != nil || n < want {
			break
		}
	}
	if lr, ok := src.(*io.LimitedReader); ok {
		lr.N = remaining
	}
	return total, err
}

// Flush sends buffered data to the client (CGI and proxy streaming).
func (rec *Recorder) Flush() {
	rec.implicitOK()
	if rec.sendTimeout > 0 {
		rec.extend(time.Now())
	}
	_ = http.NewResponseController(rec.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (rec *Recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// StatusOrOK is the status sent, 200 when the handler wrote nothing.
func (rec *Recorder) StatusOrOK() int {
	if rec.Status == 0 {
		return http.StatusOK
	}
	return rec.Status
}
