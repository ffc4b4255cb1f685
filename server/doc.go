// Package server owns a shoal node: it takes a validated config (package
// server/config), opens the listeners (HTTP, HTTPS, admin), builds one
// handler chain per site (virtual host), keeps every request's books on
// the one request path (request.go), and runs reload and graceful
// shutdown. It is the only package that knows both handlers and cluster;
// it wires them together.
package server
