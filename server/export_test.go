package server

import "testing"

// FastAnswered exposes to the tests how many responses the HTTP/1.1 fast
// path sent, so they can tell which path answered.
func FastAnswered(n *Node) int64 { return n.fastAnswered() }

// H2FastAnswered is FastAnswered for the HTTP/2 fast path.
func H2FastAnswered(n *Node) int64 { return n.h2Answered.Load() }

// RunNode runs a node on the config file at path and stops it when the
// test ends.
func RunNode(t *testing.T, path string) *Node { return runNode(t, path) }
