package server

import (
	"crypto/tls"
	"slices"

	"shoal/handlers/admin"
)

// certificates lists what the https listener serves, for
// /api/certificates and the status page: the configured files, the
// self-signed certificate and the ACME ones.
func (n *Node) certificates() []admin.Certificate {
	if n.certs == nil {
		return nil
	}
	return n.certs.list()
}

func (m *certManager) list() []admin.Certificate {
	set := m.certs.Load()
	var out []admin.Certificate
	seen := map[*tls.Certificate]bool{}
	for _, lc := range set.loaded {
		if seen[lc.cert] {
			continue
		}
		seen[lc.cert] = true
		out = append(out, describeCert(lc.cert, "file"))
	}
	if set.self != nil {
		out = append(out, describeCert(set.self.cert, "self_signed"))
	}
	if a := m.acme.Load(); a != nil {
		for _, in := range a.Certificates() {
			out = append(out, admin.Certificate{Names: in.Names, Issuer: in.Issuer, NotAfter: in.NotAfter.UTC(),
				Source: "acme", OrderedBy: in.OrderedBy, Serial: in.Serial})
		}
	}
	return out
}

func describeCert(c *tls.Certificate, source string) admin.Certificate {
	leaf := c.Leaf
	names := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = []string{leaf.Subject.CommonName}
	}
	issuer := leaf.Issuer.CommonName
	if issuer == "" && len(leaf.Issuer.Organization) > 0 {
		issuer = leaf.Issuer.Organization[0]
	}
	return admin.Certificate{Names: names, Issuer: issuer, NotAfter: leaf.NotAfter.UTC(), Source: source,
		Serial: leaf.SerialNumber.Text(16)}
}
