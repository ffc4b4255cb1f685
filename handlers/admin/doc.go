// Package admin serves a node's admin listener: the status page and its
// assets, /api/cluster, /api/upstreams, /api/certificates, /metrics,
// /healthz and POST /api/reload. It also owns the /api/cluster contract
// (Member, ClusterStatus, the member states) that the `shoal members`
// client reads and the metrics count, and NaturalCompare, the order in
// which members are listed. It knows nothing of the config file or the
// cluster: Server takes plain data and functions, and the cluster's view
// arrives as a ClusterView.
package admin
