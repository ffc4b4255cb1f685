package server

// FastAnswered exposes to the tests how many responses the HTTP/1.1 fast
// path sent, so they can tell which path answered.
func FastAnswered(n *Node) int64 { return n.fastAnswered() }

// H2FastAnswered is FastAnswered for the HTTP/2 fast path.
func H2FastAnswered(n *Node) int64 { return n.h2Answered.Load() }
