// Package route owns a site's [[site.route]] rules once they are compiled:
// path patterns, placeholder templates, the walk that collects a request's
// modifiers (response headers, allow/deny, Basic auth, rate limits) and
// picks its action (redirect, respond, rewrite, try_files, upstream), the
// htpasswd checker with its cache of good answers, and the token buckets
// whose consumption nodes exchange so a rate holds across the cluster.
//
// Everything that can be parsed is parsed by Compile, at config load: a
// request does no parsing here, only matching and appending. The package
// knows no config file, no cluster and no site: the caller hands in plain
// Specs, asks what a file exists as through a callback, and carries the
// rate-limit counts between nodes itself (Limits.Take and Limits.Consumed).
package route
