package server

import (
	"sync"
	"sync/atomic"
	"time"

	"shoal/handlers/books"
)

// A runtime lives as long as someone uses it: the node while it is the
// current one, and every request that picked it, from that moment to its
// last byte. A reload swaps in the next runtime and retires the old one,
// which closes (sites, roots, its access log) when its last request ends,
// however long that request runs: a download or a CGI script that outlives
// shutdown_grace still finds its root open and its access-log line
// written.
type runtimeRefs struct {
	// refs counts the requests holding the runtime.
	refs atomic.Int64
	// retired is set once the node no longer hands the runtime out;
	// closeOnce lets exactly one of the retirer and the last request
	// close it.
	retired   atomic.Bool
	closeOnce sync.Once
	// onIdle closes the runtime; set before retired.
	onIdle func()
}

// acquire returns the current runtime with a reference held for one
// request; the request calls release when its last byte is out. On the
// hot path this is an atomic add and a load.
func (n *Node) acquire() *runtime {
	for {
		rt := n.state.Load()
		rt.refs.Add(1)
		// A reload retires a runtime only after it stored the next one: if
		// rt is still current, the retirer will see this reference.
		if n.state.Load() == rt || n.stopped.Load() {
			return rt
		}
		rt.release() // lost a race with a reload: take the new one
	}
}

// release drops a request's reference; the last one out of a retired
// runtime closes it.
func (rt *runtime) release() {
	if rt.refs.Add(-1) == 0 && rt.retired.Load() {
		rt.closeOnce.Do(rt.onIdle)
	}
}

// Release is release for the fast path, which holds a runtime while its
// answer goes out (http1.Answer.Hold).
func (rt *runtime) Release() { rt.release() }

// retireRuntime hands rt no more requests and closes it once the last one
// is done (now, when none is). The close runs on the node's retiring
// group, so Shutdown waits for it. Call it after the next runtime is
// stored, under reloadMu.
func (n *Node) retireRuntime(rt *runtime) {
	n.retiring.Add(1)
	rt.onIdle = func() {
		go func() {
			defer n.retiring.Done()
			rt.close()
		}()
	}
	rt.retired.Store(true)
	if rt.refs.Load() == 0 {
		rt.closeOnce.Do(rt.onIdle)
	}
}

// waitRetired waits, at most for within, until every retired runtime is
// closed and every goroutine a reload started has ended.
func (n *Node) waitRetired(within time.Duration) bool {
	done := make(chan struct{})
	go func() {
		n.retiring.Wait()
		close(done)
	}()
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// sharedLog is an access log with the runtimes that write to it: a
// reload that keeps log.access lends the log to the next runtime, and it
// closes only when the last of them does.
type sharedLog struct {
	log   *books.AccessLog
	users atomic.Int32
}

func newSharedLog(l *books.AccessLog) *sharedLog {
	if l == nil {
		return nil
	}
	s := &sharedLog{log: l}
	s.users.Store(1)
	return s
}

// share adds a runtime to the log's users.
func (s *sharedLog) share() *sharedLog {
	if s != nil {
		s.users.Add(1)
	}
	return s
}

// drop removes a runtime from the log's users, closing it after the last.
func (s *sharedLog) drop() {
	if s != nil && s.users.Add(-1) == 0 {
		s.log.Close()
	}
}
