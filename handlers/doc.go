// Package handlers holds shoal's http.Handlers and middleware: static
// files, template pages, CGI, sessions, compression, the access log and
// error pages. Nothing here knows about the config file or the cluster; each
// handler takes a plain options struct, and what it needs from elsewhere (a
// node's name, its members) it declares as a small interface.
package handlers
