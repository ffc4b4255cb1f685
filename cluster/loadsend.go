package cluster

import (
	"time"
)

// kickLoad wakes the load sender; it never blocks the request path.
func (c *Cluster) kickLoad() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// report is this node's load now, with a fresh sequence number.
func (c *Cluster) report() *loadReport {
	return &loadReport{
		Name:     c.opts.Name,
		Boot:     c.boot,
		Seq:      c.seq.Add(1),
		Inflight: c.inflight.Load(),
		Capacity: c.opts.capacity(),
		Draining: c.draining.Load(),
	}
}

// loadLoop sends this node's load when it changes, at most once per
// LoadInterval, and at least once per Heartbeat so silence means trouble.
func (c *Cluster) loadLoop() {
	defer c.wg.Done()
	t := c.opts.Timings
	hb := time.NewTimer(t.heartbeat())
	defer hb.Stop()
	var (
		last      time.Time
		lastIn    int64 = -1
		lastDrain bool
	)
	for {
		force := false
		select {
		case <-c.stop:
			return
		case <-c.kick:
		case <-hb.C:
			force = true
		}
		if wait := time.Until(last.Add(t.loadInterval())); wait > 0 {
			select {
			case <-c.stop:
				return
			case <-time.After(wait):
			}
		}
		in, dr := c.inflight.Load(), c.draining.Load()
		changed := in != lastIn || dr != lastDrain
		if !force && !changed {
			continue
		}
		// A heartbeat with no news rides on gossip packets that are sent
		// anyway; only changes pay for packets of their own.
		c.sendLoad(!changed)
		last, lastIn, lastDrain = time.Now(), in, dr
		hb.Reset(t.heartbeat())
	}
}

// sendLoad reports to every live peer: one UDP packet each while the
// cluster is small (about 5 ms to all), by gossip broadcast beyond
// Timings.DirectMax, where N packets per change per node would cost N².
func (c *Cluster) sendLoad(gossip bool) {
	peers := *c.peers.Load()
	if len(peers) == 0 {
		return
	}
	r := c.report()
	if max := c.opts.Timings.directMax(); gossip || max < 0 || len(peers) > max {
		c.queue.QueueBroadcast(&loadBroadcast{name: r.Name, msg: r.encode(msgLoadGossip)})
		return
	}
	msg := r.encode(msgLoad)
	for _, m := range peers {
		n := m.node.Load()
		if n == nil {
			continue
		}
		if err := c.ml.SendBestEffort(n, msg); err != nil {
			c.log.Debug("send load", "to", m.name, "err", err)
		}
	}
}
