package cluster

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// joinLoop joins the configured peers with backoff while this node is
// alone (it serves alone meanwhile), then keeps re-joining them and the
// members it lost every Timings.Rejoin: memberlist does not heal a
// partition by itself. The first attempt's outcome goes to first.
func (c *Cluster) joinLoop(first chan<- error) {
	defer c.wg.Done()
	t := c.opts.Timings
	backoff := t.joinBackoff()
	attempt := 0
	for {
		wait := t.rejoin()
		targets := c.joinTargets()
		if len(targets) > 0 {
			attempt++
			alone := c.alive.Load() == 0
			_, err := c.ml.Join(targets)
			stale, cerr := c.checkConflict()
			if first != nil {
				first <- cerr
				first = nil
			}
			switch {
			case cerr != nil:
				c.log.Error("leaving the cluster", "err", cerr)
				c.fail(cerr)
				return
			case stale:
				// Peers still hold our previous process's address; retry
				// soon so they take the new one once they find it dead.
				wait = time.Second
			case c.alive.Load() == 0:
				c.joinFail.Add(1)
				c.log.Warn("join failed; serving alone meanwhile", "attempt", attempt, "peers", targets, "retry_in", backoff.String(), "err", err)
				wait = backoff
				backoff = min(2*backoff, 30*time.Second)
			default:
				if alone {
					c.log.Info("joined cluster", "members", c.alive.Load()+1)
				}
				backoff = t.joinBackoff()
			}
		} else if first != nil {
			first <- nil
			first = nil
		}
		c.forget()
		select {
		case <-c.stop:
			return
		case <-time.After(wait):
		}
	}
}

// joinTargets is the configured join list plus the gossip addresses of
// members that died recently (not those that left on purpose), without
// this node's own address.
func (c *Cluster) joinTargets() []string {
	self := c.GossipAddr()
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] && !c.isSelfAddr(a, self) {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, a := range c.opts.Join {
		add(a)
	}
	c.mu.Lock()
	for _, m := range c.members {
		if m.state.Load() == stDead {
			if n := m.node.Load(); n != nil {
				add(nodeAddr(n))
			}
		}
	}
	c.mu.Unlock()
	return out
}

// isSelfAddr reports whether a join address points at this node, so three
// nodes sharing one config with join = [A] do not make A join itself.
func (c *Cluster) isSelfAddr(addr, self string) bool {
	_, sport, _ := net.SplitHostPort(self)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, strconv.Itoa(7946)
	}
	if port != sport {
		return false
	}
	shost, _, _ := net.SplitHostPort(self)
	if host == shost {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return false
		}
		ip = ips[0]
	}
	if ip.IsLoopback() || ip.IsUnspecified() || ip.Equal(net.ParseIP(shost)) {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// checkConflict looks at a name clash noted during the join. If the other
// claimant answers a ping addressed to our name and started before us,
// our name is taken; if it does not answer, it is our own previous
// process (stale).
func (c *Cluster) checkConflict() (stale bool, err error) {
	c.mu.Lock()
	note := c.conflict
	c.conflict = nil
	c.mu.Unlock()
	if note == nil {
		return false, nil
	}
	// A ping carries the name it is meant for, so only a live node that
	// really uses our name answers, not whatever took over its port.
	addr, rerr := net.ResolveUDPAddr("udp", note.addr)
	if rerr == nil {
		_, rerr = c.ml.Ping(c.opts.Name, addr)
	}
	if rerr != nil {
		c.log.Info("peers still know our previous process; waiting for them to see it dead", "old_addr", note.addr)
		return true, nil
	}
	if note.started != 0 && note.started > c.started.UnixMilli() {
		c.log.Warn("a newer node tries to use our name", "name", c.opts.Name, "addr", note.addr)
		return false, nil
	}
	return false, fmt.Errorf("%w: %q is alive at %s", ErrNameTaken, c.opts.Name, note.addr)
}

// forget drops members that have been dead or gone for Timings.Forget.
func (c *Cluster) forget() {
	cut := time.Now().Add(-c.opts.Timings.forget()).UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, m := range c.members {
		if m.state.Load() != stAlive && m.changed.Load() < cut {
			delete(c.members, name)
		}
	}
}
