// Package config owns a node's configuration: the TOML file read once
// into typed structs (Config and its sections), the defaults SPEC.md
// gives, and validation whose errors name file:line:column and the full
// key (site.1.route.0.upstream). It also reads the certificate files the
// config names, so that `shoal check` reports a bad pair before serving.
// It knows nothing of listeners or handlers: constructors in server take
// the sections they need.
package config
