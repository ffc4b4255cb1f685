package cluster

// msgApp carries a payload of the server's own (the rate-limit counts
// nodes exchange) to every live peer, best effort: a lost packet costs a
// fraction of a second of accuracy, never a request.
const msgApp byte = 6

// maxAppPacket bounds one payload so that, with the kind byte and
// memberlist's encryption and label, it fits a UDP packet on any path.
const maxAppPacket = 1100

// SendToPeers sends payload to every live peer as one UDP packet each;
// a payload over maxAppPacket is refused (the caller splits its data).
func (c *Cluster) SendToPeers(payload []byte) bool {
	if len(payload) > maxAppPacket {
		return false
	}
	peers := *c.peers.Load()
	if len(peers) == 0 {
		return true
	}
	msg := append([]byte{msgApp}, payload...)
	for _, m := range peers {
		n := m.node.Load()
		if n == nil {
			continue
		}
		if err := c.ml.SendBestEffort(n, msg); err != nil {
			c.log.Debug("send to peer", "to", m.name, "err", err)
		}
	}
	return true
}

// MaxPeerPayload is the largest payload SendToPeers takes.
const MaxPeerPayload = maxAppPacket

// OnPeerMessage sets the function that receives what peers sent with
// SendToPeers (its own copy of each payload); nil drops them.
func (c *Cluster) OnPeerMessage(fn func(payload []byte)) {
	if fn == nil {
		c.appHandler.Store(nil)
		return
	}
	c.appHandler.Store(&fn)
}

func (c *Cluster) handleApp(b []byte) {
	if fn := c.appHandler.Load(); fn != nil {
		(*fn)(b)
	}
}
