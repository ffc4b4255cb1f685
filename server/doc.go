// Package server owns a shoal node: it loads and validates the config,
// opens the listeners (HTTP, HTTPS, admin), builds one handler chain per
// site (virtual host), and runs reload and graceful shutdown. It is the only
// package that knows both handlers and cluster; it wires them together.
package server
