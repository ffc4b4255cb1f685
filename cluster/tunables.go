package cluster

import (
	"fmt"
	"math"
	"time"
)

// Tunables are the routing settings a running node can change without a
// restart (Retune). Each field means what the Options field of the same
// name means, zero values included; gossip addresses, name, secret, label
// and URLs are fixed at New.
type Tunables struct {
	Mode     string
	Policy   string
	Capacity int
	Margin   float64
	Sticky   bool
	Retries  int
	// ConfigHash is published to peers for drift checks, so it changes
	// with the config it describes.
	ConfigHash string
}

// tuning is a Tunables resolved once and never changed after it is
// stored: the request path loads one snapshot and reads every setting
// from it, so no request mixes two configs and nothing is allocated per
// request.
type tuning struct {
	set      Tunables
	redirect bool
	policy   policy
	capacity int
	margin   float64
}

func (o *Options) tunables() Tunables {
	return Tunables{Mode: o.Mode, Policy: o.Policy, Capacity: o.Capacity, Margin: o.Margin,
		Sticky: o.Sticky, Retries: o.Retries, ConfigHash: o.ConfigHash}
}

// check refuses what the request path cannot follow; New and Retune share
// it, so a reload accepts exactly what a start accepts.
func (t Tunables) check() error {
	o := Options{Mode: t.Mode, Policy: t.Policy}
	switch o.mode() {
	case "proxy", "redirect":
	default:
		return fmt.Errorf("cluster: unknown mode %q (want proxy or redirect)", t.Mode)
	}
	switch o.policy() {
	case "least_loaded", "round_robin", "ip_hash", "random":
	default:
		return fmt.Errorf("cluster: unknown policy %q", t.Policy)
	}
	switch {
	case t.Capacity < 0:
		return fmt.Errorf("cluster: capacity %d is negative", t.Capacity)
	case math.IsNaN(t.Margin) || math.IsInf(t.Margin, 0):
		return fmt.Errorf("cluster: margin %v is not a number", t.Margin)
	case t.Retries < 0:
		return fmt.Errorf("cluster: retries %d is negative", t.Retries)
	}
	return nil
}

// newTuning resolves t. The policy of prev is kept when its settings did
// not change, so a reload does not reset round_robin's position.
func newTuning(t Tunables, prev *tuning) *tuning {
	o := Options{Mode: t.Mode, Policy: t.Policy, Capacity: t.Capacity, Margin: t.Margin}
	next := &tuning{set: t, redirect: o.mode() == "redirect", capacity: o.capacity(), margin: o.margin()}
	if prev != nil && prev.set.Policy == t.Policy && prev.margin == next.margin {
		next.policy = prev.policy
	} else {
		next.policy = newPolicy(o.policy(), next.margin)
	}
	return next
}

// Tunables returns the settings in force.
func (c *Cluster) Tunables() Tunables { return c.tune.Load().set }

// Retune swaps the routing settings while requests run: each request
// follows either the old or the new settings, never a mix. When the
// capacity or config hash changed, this node's meta is published again
// (and a load report sent) so peers see it within a gossip round. Invalid
// settings change nothing. Retune may block up to a second while the news
// goes out; it must not be called from a memberlist callback.
func (c *Cluster) Retune(t Tunables) error {
	if err := t.check(); err != nil {
		return err
	}
	c.tuneMu.Lock()
	defer c.tuneMu.Unlock()
	old := c.tune.Load()
	next := newTuning(t, old)

	// The meta is encoded before the swap so that one too large for
	// memberlist leaves the old settings in force; under mu, so a
	// concurrent SetDraining encodes after or before, never in between.
	c.mu.Lock()
	m := c.selfMeta()
	m.Capacity, m.Config = next.capacity, t.ConfigHash
	meta, err := m.encode()
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.tune.Store(next)
	c.meta = meta
	c.mu.Unlock()

	if next.capacity != old.capacity {
		c.sendLoad(false) // reports carry the capacity too, and travel faster than meta
	}
	if next.capacity != old.capacity || t.ConfigHash != old.set.ConfigHash {
		// Outside every lock: memberlist asks the delegate for the meta.
		if err := c.ml.UpdateNode(time.Second); err != nil {
			c.log.Warn("publish retuned meta; peers learn it at the next state exchange", "err", err)
		}
	}
	return nil
}
