package server

import (
	"errors"
	"net"
	"sync"
	"time"
)

// acceptor owns one listening socket and hands its connections to
// whichever http.Server currently serves it. A reload that changes server
// limits starts a new http.Server on the same socket and shuts the old one
// down, so no connection attempt is refused in between and the port never
// closes.
type acceptor struct {
	ln    net.Listener
	conns chan net.Conn
	stop  chan struct{}
	once  sync.Once
}

func newAcceptor(ln net.Listener) *acceptor {
	a := &acceptor{ln: ln, conns: make(chan net.Conn), stop: make(chan struct{})}
	go a.loop()
	return a
}

func (a *acceptor) loop() {
	var backoff time.Duration
	for {
		c, err := a.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http
			// does, rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
				continue
			case <-a.stop:
				return
			}
		}
		backoff = 0
		select {
		case a.conns <- c:
		case <-a.stop:
			c.Close()
			return
		}
	}
}

// close stops accepting and closes the socket.
func (a *acceptor) close() {
	a.once.Do(func() {
		close(a.stop)
		a.ln.Close()
	})
}

// listener returns a net.Listener for one http.Server; closing it (as
// Server.Shutdown does) detaches that server only.
func (a *acceptor) listener() net.Listener {
	return &serverListener{a: a, done: make(chan struct{})}
}

type serverListener struct {
	a    *acceptor
	done chan struct{}
	once sync.Once
}

func (l *serverListener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.a.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.a.stop:
		return nil, net.ErrClosed
	}
}

func (l *serverListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *serverListener) Addr() net.Addr { return l.a.ln.Addr() }
