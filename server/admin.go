package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"

	"shoal/handlers/admin"
	"shoal/server/config"
)

// configHash is a short hash of the effective config, so drift between
// nodes shows on the status page. What differs from node to node by
// design (name, listen and gossip addresses, URLs, join list) is left out,
// so peers started from one file with different flags hash alike. Secrets
// are hashed, never shown.
func configHash(cfg *config.Config) string {
	srv, cl := cfg.Server, cfg.Cluster
	srv.Name, srv.HTTP, srv.HTTPS, srv.Admin = "", "", "", ""
	cl.Gossip, cl.Advertise, cl.Join, cl.PeerURL, cl.PublicURL = "", "", nil, "", ""
	// Paths as written, not as resolved: the same file in two folders is
	// the same config.
	rel := func(p string) string {
		if r, err := filepath.Rel(cfg.Dir, p); err == nil && p != "" && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	logc, tlsc, sess := cfg.Log, cfg.TLS, cfg.Session
	logc.Access, tlsc.Cert, tlsc.Key, sess.KeyFile = rel(logc.Access), rel(tlsc.Cert), rel(tlsc.Key), rel(sess.KeyFile)
	sites := make([]config.Site, len(cfg.Sites))
	for i, sc := range cfg.Sites {
		sc.Root, sc.Templates, sc.Cert, sc.Key = rel(sc.Root), rel(sc.Templates), rel(sc.Cert), rel(sc.Key)
		sc.CGI = append([]config.CGI(nil), sc.CGI...)
		for j := range sc.CGI {
			sc.CGI[j].Dir = rel(sc.CGI[j].Dir)
		}
		sites[i] = sc
	}
	b, _ := json.Marshal(struct {
		Server  config.Server
		Log     config.Log
		TLS     config.TLS
		Session config.Session
		Sites   []config.Site
		Cluster config.Cluster
	}{srv, logc, tlsc, sess, sites, cl})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:4])
}

// nodeName is server.name, or hostname:http-port as SPEC says.
func nodeName(cfg *config.Config) string {
	if cfg.Server.Name != "" {
		return cfg.Server.Name
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "shoal"
	}
	addr := cfg.Server.HTTP
	if addr == "" {
		addr = cfg.Server.HTTPS
	}
	if _, port, err := net.SplitHostPort(addr); err == nil && port != "" && port != "0" {
		return host + ":" + port
	}
	// No fixed port to tell nodes on one host apart: a random suffix does.
	var b [3]byte
	rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// adminHandler builds the admin listener's handler.
func (n *Node) adminHandler() *admin.Server {
	a := &admin.Server{
		View:     n.clusterView(),
		Draining: n.Draining,
		Reload:   n.Reload,
		Gatherer: n.registry,
		Describe: n.describe,
		Version:  n.version,
		Logger:   n.log,
		// n.certs is set in New before the admin handler is built.
		Certificates: n.certificates,
	}
	a.Upstreams = func() any { return n.state.Load().upstreams.snapshot() }
	return a
}

// clusterView is the cluster as this node sees it; without a cluster, the
// node alone.
func (n *Node) clusterView() admin.ClusterView {
	return clusterView{ref: &n.cl, self: n.selfMember}
}

// selfMember describes this node from its own counters.
func (n *Node) selfMember() admin.Member {
	rt := n.state.Load()
	capacity := rt.cfg.Cluster.Capacity
	inflight := n.metrics.InFlight()
	m := admin.Member{
		Name:     rt.name,
		State:    admin.StateAlive,
		Inflight: inflight,
		Capacity: capacity,
		Draining: n.Draining(),
		Config:   rt.hash,
		Version:  n.version,
		Started:  n.started,
		PeerURL:  n.localURL(),
	}
	if capacity > 0 {
		m.Load = float64(inflight) / float64(capacity)
	}
	n.metrics.Fill(&m)
	return m
}

// localURL is how this node's HTTP listener is reached, for the status page.
func (n *Node) localURL() string {
	addrs := n.Addrs()
	if a, ok := addrs["http"]; ok {
		return "http://" + a
	}
	if a, ok := addrs["https"]; ok {
		return "https://" + a
	}
	return ""
}

// describe lists the sites and listeners for the status page.
func (n *Node) describe() ([]admin.Site, []string) {
	rt := n.state.Load()
	var sites []admin.Site
	for _, sc := range rt.cfg.Sites {
		as := admin.Site{Hosts: sc.Hosts, Root: sc.Root}
		for _, c := range sc.CGI {
			if c.Prefix != "" {
				as.CGI = append(as.CGI, c.Prefix)
			}
			as.CGI = append(as.CGI, c.Ext...)
		}
		sites = append(sites, as)
	}
	var listeners []string
	for role, addr := range n.Addrs() {
		listeners = append(listeners, role+" "+addr)
	}
	sortStrings(listeners)
	return sites, listeners
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
