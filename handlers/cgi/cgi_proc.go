package cgi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"shoal/handlers/books"
)

// Why a script was stopped before it finished on its own.
const (
	cgiRunning       int32 = iota
	cgiStopTimeout         // it went Timeout without any I/O
	cgiStopMaxTime         // it ran past MaxTime
	cgiStopClient          // the client went away
	cgiStopAbandoned       // its output is of no further use (a malformed header)
)

// cgiProc is one running script: the leader of its own process group, so
// that everything it starts can be signalled at once.
type cgiProc struct {
	pid    int
	stdout *os.File
	grace  time.Duration

	stdinW     *os.File      // nil unless a goroutine feeds stdin
	stdinDone  chan struct{} // closed when that goroutine is done
	fromClient bool          // whether it reads the request body
	// body watches the feeder's reads of the request body: a read
	// deadline may wake it only while it waits in such a read before the
	// end (after the end net/http reads the connection itself, and a
	// deadline would then cancel the connection's requests).
	body       *bodyFeedReader
	stderrDone chan struct{}

	reason    atomic.Int32 // one of the stop constants
	idle      time.Duration
	lastIO    atomic.Int64 // unix nanoseconds of the last byte moved through stdin or stdout
	idleTimer *time.Timer
	// stdinFile is a buffered body the script reads straight from the
	// file; the offset it shares with the script shows its reads.
	stdinFile *os.File
	stdinPos  int64
	maxTimer  *time.Timer // nil without MaxTime
	stopCtx   func() bool

	// mu guards reaped and killTimer: once the leader is reaped its pid,
	// which is the group id, may be reused, so no signal may follow.
	mu        sync.Mutex
	reaped    bool
	killTimer *time.Timer

	exited bool               // set by finish
	status syscall.WaitStatus // how the script ended, once exited
}

// start launches the script with its own process group, stdout and stderr
// as pipes and the body on stdin. It works on raw descriptors and
// syscall.StartProcess: the script's ends of the pipes need no *os.File
// (whose making, blocking for the child and closing cost more than the
// pipes themselves), and only the server's ends join the poller.
func (h *Handler) start(r *http.Request, sc *cgiScript, env []string, in *cgiInput) (*cgiProc, error) {
	st := h.state()
	stdoutR, stdoutW, err := cgiPipe("stdout", true)
	if err != nil {
		return nil, err
	}
	stderrR, stderrW, err := cgiPipe("stderr", true)
	if err != nil {
		stdoutR.Close()
		syscall.Close(stdoutW)
		return nil, err
	}
	p := &cgiProc{stdout: stdoutR, grace: st.grace, stderrDone: make(chan struct{})}
	stdin, feed, err := p.stdinFor(in, st)
	if err != nil {
		cgiCloseFiles(stdoutR, stderrR)
		cgiCloseFds(stdoutW, stderrW)
		return nil, err
	}
	attr := &syscall.ProcAttr{
		Dir:   filepath.Dir(sc.file),
		Env:   env,
		Files: []uintptr{stdin.fd, uintptr(stdoutW), uintptr(stderrW)},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	pid, _, err := syscall.StartProcess(sc.argv[0], sc.argv, attr)
	stdin.keep()
	cgiCloseFds(stdoutW, stderrW)
	stdin.release()
	if err != nil {
		cgiCloseFiles(stdoutR, stderrR, p.stdinW)
		return nil, fmt.Errorf("cgi: starting %s: %w", sc.argv[0], &os.PathError{Op: "fork/exec", Path: sc.argv[0], Err: err})
	}
	p.pid = pid
	logger := func() *slog.Logger {
		return h.logger().With("script", sc.file, "method", r.Method, "uri", cgiRequestURI(r), "remote", books.ClientIP(r))
	}
	go p.logStderr(stderrR, logger)
	if feed != nil {
		p.stdinDone = make(chan struct{})
		go p.feedStdin(feed)
	}
	return p, nil
}

// cgiPipe makes a pipe between the server and a script. The server's end
// (the read end when serverReads, else the write end) is non-blocking and
// in the poller, for deadlines and for a close that wakes a blocked
// reader or writer; the script's end stays a blocking raw descriptor.
func cgiPipe(name string, serverReads bool) (server *os.File, script int, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, -1, fmt.Errorf("cgi: %s pipe: %w", name, err)
	}
	ours, theirs := fds[1], fds[0]
	if serverReads {
		ours, theirs = fds[0], fds[1]
	}
	if err := syscall.SetNonblock(ours, true); err != nil {
		cgiCloseFds(fds[0], fds[1])
		return nil, -1, fmt.Errorf("cgi: %s pipe: %w", name, err)
	}
	return os.NewFile(uintptr(ours), "|"+name), theirs, nil
}

func cgiCloseFds(fds ...int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// cgiStdin is the descriptor a script gets as stdin, and what keeps it
// open until the script has its copy.
type cgiStdin struct {
	fd   uintptr
	file *os.File // when it belongs to an *os.File, kept alive across the start
	own  int      // a pipe end of our own to close after the start; -1: none
}

func (s cgiStdin) keep() { runtime.KeepAlive(s.file) }

func (s cgiStdin) release() {
	if s.own >= 0 {
		syscall.Close(s.own)
	}
}

// stdinFor returns what the script gets as stdin and, when the body must
// be copied into a pipe, where to copy it from.
func (p *cgiProc) stdinFor(in *cgiInput, st *cgiState) (cgiStdin, io.Reader, error) {
	switch {
	case in.file != nil:
		p.stdinFile = in.file
		return cgiStdin{fd: in.file.Fd(), file: in.file, own: -1}, nil, nil
	case in.cgiStream == nil && in.mem == nil:
		null, err := st.devNull()
		if err != nil {
			return cgiStdin{}, nil, err
		}
		return cgiStdin{fd: null.Fd(), file: null, own: -1}, nil, nil
	}
	// Closing the feeder's end wakes a feeder blocked on a script that
	// reads nothing.
	w, r, err := cgiPipe("stdin", false)
	if err != nil {
		return cgiStdin{}, nil, err
	}
	p.stdinW = w
	stdin := cgiStdin{fd: uintptr(r), own: r}
	if in.cgiStream != nil {
		p.fromClient = true
		p.body = &bodyFeedReader{r: in.cgiStream}
		return stdin, p.body, nil
	}
	return stdin, bytes.NewReader(in.mem), nil
}

func (p *cgiProc) feedStdin(src io.Reader) {
	defer close(p.stdinDone)
	defer p.stdinW.Close()
	// Hide the pipe's ReadFrom so the copy uses a small buffer of its own.
	io.CopyBuffer(cgiTouchWriter{p.stdinW, p}, src, make([]byte, 16<<10))
}

// logStderr logs each line the script writes to stderr, tagged with the
// script and the request; the tagged logger is made only when a line
// comes, as most scripts write none.
func (p *cgiProc) logStderr(r *os.File, logger func() *slog.Logger) {
	defer close(p.stderrDone)
	defer r.Close()
	var first [512]byte
	n, err := io.ReadAtLeast(r, first[:], 1)
	if err != nil {
		return // nothing written: no scanner, no buffer
	}
	var log *slog.Logger
	sc := bufio.NewScanner(io.MultiReader(bytes.NewReader(first[:n]), r))
	sc.Buffer(nil, 16<<10)
	for sc.Scan() {
		if log == nil {
			log = logger()
		}
		log.Warn("cgi stderr", "line", sc.Text())
	}
	if sc.Err() != nil {
		logger().Warn("cgi stderr: line too long; the rest of stderr is discarded")
		io.Copy(io.Discard, r) // a script must not block on a full pipe
	}
}

// watch stops the script when it goes idle longer than idle, runs past
// maxTime (0: never) or the client leaves.
func (p *cgiProc) watch(ctx context.Context, idle, maxTime time.Duration) {
	p.idle = idle
	p.touch()
	// Made stopped and then armed, so checkIdle never sees the field unset.
	p.idleTimer = time.AfterFunc(time.Hour, p.checkIdle)
	p.idleTimer.Stop()
	p.idleTimer.Reset(idle)
	if maxTime > 0 {
		p.maxTimer = time.AfterFunc(maxTime, func() { p.terminate(cgiStopMaxTime) })
	}
	p.stopCtx = context.AfterFunc(ctx, func() { p.terminate(cgiStopClient) })
}

// touch notes that a byte moved between the server and the script.
func (p *cgiProc) touch() { p.lastIO.Store(time.Now().UnixNano()) }

// checkIdle stops the script when nothing moved for the whole idle time,
// and otherwise looks again when that time will be up: one timer per run,
// not one reset per read.
func (p *cgiProc) checkIdle() {
	if p.stdinFile != nil {
		if pos, err := p.stdinFile.Seek(0, io.SeekCurrent); err == nil && pos != p.stdinPos {
			p.stdinPos = pos
			p.touch()
		}
	}
	quiet := time.Since(time.Unix(0, p.lastIO.Load()))
	if quiet >= p.idle {
		p.terminate(cgiStopTimeout)
		return
	}
	p.idleTimer.Reset(p.idle - quiet)
}

// stopTimers ends the watch of the idle time and of MaxTime.
func (p *cgiProc) stopTimers() {
	if p.idleTimer != nil {
		p.idleTimer.Stop()
	}
	if p.maxTimer != nil {
		p.maxTimer.Stop()
	}
}

// cgiTouchReader notes each read that brings bytes from the script.
type cgiTouchReader struct {
	r io.Reader
	p *cgiProc
}

func (t cgiTouchReader) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if n > 0 {
		t.p.touch()
	}
	return n, err
}

// cgiTouchWriter notes each write that hands bytes to the script.
type cgiTouchWriter struct {
	w io.Writer
	p *cgiProc
}

func (t cgiTouchWriter) Write(b []byte) (int, error) {
	n, err := t.w.Write(b)
	if n > 0 {
		t.p.touch()
	}
	return n, err
}

// terminate sends SIGTERM to the whole group, SIGKILL after the grace, and
// wakes the handler from its read of stdout at once. The first reason wins.
func (p *cgiProc) terminate(reason int32) {
	if !p.reason.CompareAndSwap(cgiRunning, reason) {
		return
	}
	p.mu.Lock()
	if !p.reaped {
		syscall.Kill(-p.pid, syscall.SIGTERM)
		p.killTimer = time.AfterFunc(p.grace, func() { p.signal(syscall.SIGKILL) })
	}
	p.mu.Unlock()
	p.stdout.SetReadDeadline(time.Now())
}

// setReadDeadline sets stdout's read deadline, except while the script is
// being stopped: terminate's deadline (now) must stand, or the handler
// could block on a script that is dying slowly.
func (p *cgiProc) setReadDeadline(t time.Time) {
	p.stdout.SetReadDeadline(t)
	if p.reason.Load() != cgiRunning {
		p.stdout.SetReadDeadline(time.Now())
	}
}

func (p *cgiProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped {
		syscall.Kill(-p.pid, sig)
	}
}

// finish waits for the script to exit, kills whatever it left running in
// its group, reaps it and releases its pipes. Until the script exits by
// itself the timeout and the client's leaving still apply. Idempotent.
func (p *cgiProc) finish(rc *http.ResponseController) {
	if p.exited {
		return
	}
	cgiWaitExited(p.pid)
	p.stopTimers()
	p.stopCtx()
	p.mu.Lock()
	// The leader is a zombie, so its group id is still ours: stragglers
	// (background children holding no pipe) go now, not at some later time.
	syscall.Kill(-p.pid, syscall.SIGKILL)
	p.reaped = true
	if p.killTimer != nil {
		p.killTimer.Stop()
	}
	p.mu.Unlock()
	p.status = cgiReap(p.pid)
	p.exited = true
	p.stdout.Close()
	p.stopStdin(rc)
	cgiWaitBounded(p.stderrDone, time.Second)
}

// exitString says how the script ended, as os.ProcessState does.
func (p *cgiProc) exitString() string {
	ws := p.status
	switch {
	case !p.exited:
		return "running"
	case ws.Exited():
		return "exit status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		return "signal: " + ws.Signal().String()
	}
	return "status " + strconv.Itoa(int(ws))
}

// cgiReap collects the exit status of the script, which has exited.
func cgiReap(pid int) syscall.WaitStatus {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			return ws
		}
	}
}

// stopStdin ends the goroutine feeding stdin, which may be blocked reading
// a slow client's body or writing to a pipe nobody reads any more; a
// handler must not return while something still reads its request body.
func (p *cgiProc) stopStdin(rc *http.ResponseController) {
	if p.stdinDone == nil {
		return
	}
	select {
	case <-p.stdinDone:
		return
	default:
	}
	p.stdinW.Close() // wakes a feeder blocked writing to the pipe
	if !p.fromClient || rc == nil {
		<-p.stdinDone
		return
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	woke := false
	for {
		select {
		case <-p.stdinDone:
			return
		case <-tick.C:
			if !woke && p.body.waiting() {
				rc.SetReadDeadline(time.Now()) // a slow client's body
				woke = true
			}
		}
	}
}

// bodyFeedReader tells whether the feeder waits for the client's body.
type bodyFeedReader struct {
	r            io.Reader
	inRead, done atomic.Bool
}

func (b *bodyFeedReader) Read(p []byte) (int, error) {
	b.inRead.Store(true)
	n, err := b.r.Read(p)
	b.inRead.Store(false)
	if err != nil {
		b.done.Store(true)
	}
	return n, err
}

func (b *bodyFeedReader) waiting() bool { return b.inRead.Load() && !b.done.Load() }

// cgiWaitExited blocks until process pid has exited, without reaping it. It
// asks once without blocking first: at stdout's EOF the script has usually
// exited already, and a blocking call costs the runtime a thread handoff.
func cgiWaitExited(pid int) {
	var info unix.Siginfo
	if unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil) == nil && info.Signo == int32(syscall.SIGCHLD) {
		return
	}
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// cgiWaitBounded waits for done, at most d: an escaped grandchild (one that
// called setsid) may hold a pipe open for ever.
func cgiWaitBounded(done <-chan struct{}, d time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func cgiCloseFiles(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
