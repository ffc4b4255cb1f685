package server

// FastAnswered exposes to the tests how many responses the HTTP/1.1 fast
// path sent, so they can tell which path answered.
func FastAnswered(n *Node) int64 { return n.fastAnswered() }
