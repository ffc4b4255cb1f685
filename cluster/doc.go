// Package cluster makes a set of shoal nodes one service.
//
// Nodes find each other by gossip (hashicorp/memberlist, encrypted with the
// cluster secret and separated by a cluster label), publish their static
// facts (URLs, capacity, version, config hash, start time, a per-start boot
// id) as memberlist node meta, and send their in-flight request count to
// every peer within a fraction of a second: directly over UDP while the
// cluster is small, by gossip broadcast beyond that (see the numbers in
// docs/readme-cluster.md).
//
// Every node is origin and balancer at once. The Middleware placed after
// virtual-host selection decides, for each request that the balance setting
// covers, whether to serve it here, proxy it to a peer or redirect the
// client there. A proxied request carries a hop header signed with a key
// derived from the secret, and a node always serves such a request itself,
// so a request takes at most one hop; a redirected client carries a signed
// marker for the same reason. Peers that fail to answer are skipped for a
// while (passive health) and idempotent requests are retried elsewhere, so
// losing a node fails no GET. A request for a site goes only to nodes that
// publish this node's hash of that site (drift.go), so a rolling change
// never mixes answers.
//
// Thread safety: a Cluster is safe for concurrent use. memberlist calls into
// the package through a small delegate type that only forwards to handleX
// methods; none of them call back into memberlist, which would deadlock.
package cluster
