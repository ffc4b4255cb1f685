package server

import (
	"context"
	"time"

	"shoal/cluster"
	"shoal/handlers/route"
)

// Channels of the cluster's peer messages (cluster.SendToPeers), one per
// feature that shares state between nodes.
const (
	peerRates          byte = 1 // rate-limit counts (this file)
	peerUpstreamHealth byte = 2 // targets found down or up (upstreamsync.go)
	peerUpstreamLoad   byte = 3 // per-target in-flight counts (upstreamsync.go)
)

// rateExchange is how often a node tells its peers what its rate limits
// admitted: at 200 ms a client spreading requests over the cluster gets
// the rate plus what the nodes admit in a fifth of a second before they
// hear of each other (handlers/route's http1.Limits).
const rateExchange = 200 * time.Millisecond

// maxRateCounts is how many of the heaviest clients one exchange names.
const maxRateCounts = 256

// exchangeRates runs while the node does: with a cluster (c not nil),
// every rateExchange it sends the counts the node's rate buckets admitted
// to every peer, and charges its own buckets with what the peers send.
// Now and then it sweeps buckets that refilled and limits no config has
// any more.
func (n *Node) exchangeRates(ctx context.Context, c *cluster.Cluster) {
	limits := n.routes.limits
	var exchange <-chan time.Time
	if c != nil {
		limits.Share(true)
		defer limits.Share(false)
		c.OnPeerMessage(peerRates, func(b []byte) {
			if counts, err := route.ParseCounts(b); err == nil {
				limits.Consumed(counts, time.Now())
			}
		})
		defer c.OnPeerMessage(peerRates, nil)
		tick := time.NewTicker(rateExchange)
		defer tick.Stop()
		exchange = tick.C
	}
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-exchange:
			sendCounts(c, limits.Take(maxRateCounts))
		case now := <-sweep.C:
			limits.Sweep(now, n.liveLimits())
		}
	}
}

// sendCounts sends counts in as many packets as they need.
func sendCounts(c *cluster.Cluster, counts []route.Count) {
	for len(counts) > 0 {
		var pkt []byte
		i := 0
		for ; i < len(counts); i++ {
			next := route.AppendCounts(nil, counts[i:i+1])
			if len(pkt)+len(next)-1 > cluster.MaxPeerPayload && i > 0 {
				break
			}
			if pkt == nil {
				pkt = next
			} else {
				pkt = append(pkt, next[1:]...) // one version byte per packet
			}
		}
		c.SendToPeers(peerRates, pkt)
		counts = counts[i:]
	}
}

// liveLimits is the IDs of the rate limits of the config in force.
func (n *Node) liveLimits() map[string]bool {
	keep := map[string]bool{}
	if rt := n.state.Load(); rt != nil {
		for _, st := range rt.sites {
			st.routes.IDs(keep)
		}
	}
	return keep
}
