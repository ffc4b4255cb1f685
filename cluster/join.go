package cluster

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"
)

// joinLoop joins the configured peers with backoff while this node is
// alone (it serves alone meanwhile). After that it joins only when there
// is something to heal: members it saw die (a partition that may have
// healed, a node restarting), checked every Timings.Rejoin; and, rarely
// and with jitter, one address picked at random from every member and
// configured peer, for two halves that have already forgotten each
// other. A healthy cluster makes no join calls, and no seed carries the
// re-joins of every node. The first attempt's outcome goes to first.
func (c *Cluster) joinLoop(first chan<- error) {
	defer c.wg.Done()
	t := c.opts.Timings
	backoff := t.joinBackoff()
	attempt := 0
	idle := time.Now().Add(idleRejoin(t.rejoin()))
	// Read once: memberlist drops its own entry when another node takes
	// our name, and the address never changes.
	self := c.GossipAddr()
	for {
		wait := t.rejoin()
		alone := c.alive.Load() == 0
		targets := c.joinPlan(self, alone, time.Now(), &idle)
		if len(targets) > 0 {
			attempt++
			before := c.alive.Load()
			c.joins.Add(1)
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
				} else if now := c.alive.Load(); now > before {
					c.log.Info("rejoined lost members", "members", now+1)
				}
				backoff = t.joinBackoff()
			}
		} else if first != nil {
			first <- nil
			first = nil
		}
		c.forget()
		c.mlLog.flush(time.Now())
		select {
		case <-c.stop:
			return
		case <-time.After(wait):
		}
	}
}

// maxRejoinTargets bounds one re-join of lost members: each unreachable
// address may cost a TCP timeout, and a few are enough to heal through.
const maxRejoinTargets = 3

// joinPlan returns the addresses to join now, or none: everything known
// while alone; else a few members seen dead plus one configured peer;
// else, once idle has passed (then moved on), one random address of all.
func (c *Cluster) joinPlan(self string, alone bool, now time.Time, idle *time.Time) []string {
	configured := c.addrs(c.opts.Join, self)
	dead, live := c.memberAddrs(self)
	switch {
	case alone:
		return dedupe(append(configured, dead...))
	case len(dead) > 0:
		rand.Shuffle(len(dead), func(i, j int) { dead[i], dead[j] = dead[j], dead[i] })
		out := dead[:min(len(dead), maxRejoinTargets)]
		if len(configured) > 0 {
			out = append(out, configured[rand.IntN(len(configured))])
		}
		*idle = now.Add(idleRejoin(c.opts.Timings.rejoin()))
		return dedupe(out)
	case now.After(*idle):
		*idle = now.Add(idleRejoin(c.opts.Timings.rejoin()))
		all := dedupe(append(configured, live...))
		if len(all) == 0 {
			return nil
		}
		i := rand.IntN(len(all))
		return all[i : i+1]
	}
	return nil
}

// idleRejoin is the jittered wait before a re-join of a cluster that
// looks whole: 6 to 12 Rejoin periods and at least a minute, so at 20
// nodes the whole cluster makes one such join every few seconds.
func idleRejoin(rejoin time.Duration) time.Duration {
	base := max(6*rejoin, time.Minute)
	return base + rand.N(base)
}

// addrs is list without this node's own address.
func (c *Cluster) addrs(list []string, self string) []string {
	var out []string
	for _, a := range list {
		if !c.isSelfAddr(a, self) {
			out = append(out, a)
		}
	}
	return out
}

// memberAddrs returns the gossip addresses of the members that died
// recently (not those that left on purpose) and of the live ones.
func (c *Cluster) memberAddrs(self string) (dead, live []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		n := m.node.Load()
		if n == nil {
			continue
		}
		a := nodeAddr(n)
		if a == self {
			continue
		}
		switch m.state.Load() {
		case stDead:
			dead = append(dead, a)
		case stAlive:
			live = append(live, a)
		}
	}
	return dead, live
}

// dedupe drops repeated addresses, keeping the first of each.
func dedupe(list []string) []string {
	seen := make(map[string]bool, len(list))
	out := list[:0:0]
	for _, a := range list {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
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
