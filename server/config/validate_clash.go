package config

import (
	"net"
	"strconv"
	"strings"
)

// duplicateHosts fails a host name that two sites claim: requests for it
// would always reach the first, and the second site silently never serves.
func (v *validator) duplicateHosts() {
	first := map[string]int{}
	for i, s := range v.c.Sites {
		for _, h := range s.Hosts {
			name := strings.ToLower(strings.TrimSuffix(h, "."))
			if j, ok := first[name]; ok && j != i {
				v.fail(siteKey(i, "hosts"), "host %q is already served by site %d (%s); each host belongs to one site", h, j, siteKey(j, "hosts"))
				continue
			}
			first[name] = i
		}
	}
}

func siteKey(i int, k string) string {
	return "site." + strconv.Itoa(i) + "." + k
}

// listenerClash fails two listeners on one port (http and https, or the
// admin or gossip listener on either): the second could never open, and
// `shoal serve` would stop with "address already in use" after check
// said ok. Port 0 (the OS picks) never clashes; a wildcard host clashes
// with any host on its port.
func (v *validator) listenerClash() {
	type listen = struct{ key, addr string }
	ls := []listen{{"server.http", v.c.Server.HTTP}, {"server.https", v.c.Server.HTTPS}, {"server.admin", v.c.Server.Admin}}
	if v.c.Cluster.Enabled {
		ls = append(ls, listen{"cluster.gossip", v.c.Cluster.Gossip})
	}
	for i, a := range ls {
		for _, b := range ls[:i] {
			if sameListener(a.addr, b.addr) {
				v.clash(a, b)
				break
			}
		}
	}
}

// clash reports two listeners on one port at the one written in the file
// (the other may be a default, such as admin's 127.0.0.1:9180).
func (v *validator) clash(a, b struct{ key, addr string }) {
	other := "%s (%q)"
	if !v.defined(b.key) {
		other = "%s (its default %q)"
	}
	if !v.defined(a.key) && v.defined(b.key) {
		a, b = b, a
		other = "%s (its default %q)"
	}
	v.fail(a.key, "%q uses the same port as "+other+"; give each listener its own port", a.addr, b.key, b.addr)
}

func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}
