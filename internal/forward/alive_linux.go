package forward

import (
	"crypto/tls"
	"net"
	"syscall"
)

// alive reports whether an idle connection still looks open: nothing to
// read (no EOF, no stray bytes, no TLS alert) without blocking. One
// recvfrom; used before a request whose body could not be sent again.
func alive(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN
		return true
	})
	return ok
}
