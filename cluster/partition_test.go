package cluster

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// partition decides which gossip ports can talk; cut splits them by group.
type partition struct {
	mu    sync.Mutex
	group map[int]int
	cut   bool
}

func (p *partition) blocked(a, b int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut && p.group[a] != p.group[b]
}

func (p *partition) set(cut bool) {
	p.mu.Lock()
	p.cut = cut
	p.mu.Unlock()
}

// cuttable wraps memberlist's network transport, dropping traffic across
// the partition in both directions.
type cuttable struct {
	*memberlist.NetTransport
	p       *partition
	port    int
	packets chan *memberlist.Packet
	streams chan net.Conn
}

var errCut = errors.New("partitioned")

func portOfAddr(a string) int {
	_, ps, _ := net.SplitHostPort(a)
	p, _ := strconv.Atoi(ps)
	return p
}

func newCuttable(t testing.TB, p *partition, group int) func(*memberlist.Config) {
	return func(cfg *memberlist.Config) {
		fastGossip(cfg)
		// Stop talking to dead nodes soon, so only a re-join can heal.
		cfg.GossipToTheDeadTime = 50 * time.Millisecond
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: cfg.Logger})
		if err != nil {
			t.Fatal(err)
		}
		port := nt.GetAutoBindPort()
		cfg.BindPort, cfg.AdvertisePort = port, port
		p.mu.Lock()
		p.group[port] = group
		p.mu.Unlock()
		c := &cuttable{NetTransport: nt, p: p, port: port, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn)}
		go func() {
			for pk := range nt.PacketCh() {
				if !p.blocked(port, portOfAddr(pk.From.String())) {
					c.packets <- pk
				}
			}
		}()
		go func() {
			for conn := range nt.StreamCh() {
				if p.blocked(port, portOfAddr(conn.RemoteAddr().String())) {
					conn.Close()
					continue
				}
				c.streams <- conn
			}
		}()
		cfg.Transport = c
	}
}

func (c *cuttable) PacketCh() <-chan *memberlist.Packet { return c.packets }
func (c *cuttable) StreamCh() <-chan net.Conn           { return c.streams }

func (c *cuttable) WriteTo(b []byte, addr string) (time.Time, error) {
	if c.p.blocked(c.port, portOfAddr(addr)) {
		return time.Now(), nil // lost on the wire
	}
	return c.NetTransport.WriteTo(b, addr)
}

func (c *cuttable) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if c.p.blocked(c.port, portOfAddr(addr)) {
		return nil, errCut
	}
	return c.NetTransport.DialTimeout(addr, timeout)
}

func TestPartitionHeals(t *testing.T) {
	p := &partition{group: map[int]int{}}
	in := func(g int) nodeOpt { return func(o *Options) { o.Tune = newCuttable(t, p, g) } }
	a := startNode(t, "a", nil, in(0))
	b := startNode(t, "b", []string{a.c.GossipAddr()}, in(0))
	c := startNode(t, "c", []string{a.c.GossipAddr()}, in(1))
	d := startNode(t, "d", []string{a.c.GossipAddr()}, in(1))
	all := []*testNode{a, b, c, d}
	converged(t, all...)

	p.set(true)
	eventually(t, 15*time.Second, "split seen on both sides", func() bool {
		return stateOf(a.c, "c") == StateDead && stateOf(a.c, "d") == StateDead &&
			stateOf(d.c, "a") == StateDead && stateOf(d.c, "b") == StateDead
	})
	split := time.Now()
	eventually(t, time.Second, "dead-gossip window over", func() bool { return time.Since(split) > 200*time.Millisecond })
	p.set(false)
	start := time.Now()
	converged(t, all...)
	t.Logf("partition healed %v after the network did", time.Since(start))
}

func (c *cuttable) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return c.WriteTo(b, a.Addr)
}

func (c *cuttable) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return c.DialTimeout(a.Addr, timeout)
}
