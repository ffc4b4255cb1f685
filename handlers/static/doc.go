// Package static serves a site's files: the file server (Handler) with
// its in-memory cache of small files, content types, conditional requests,
// byte ranges, folder listings and precompressed sidecars; FastFile, the
// cached answer the HTTP/1.1 and HTTP/2 fast paths send without building
// a request; and the content codings, including Compressor, which
// compresses dynamic responses (pages, CGI) with the same negotiation.
// Dot files (but .well-known), template sources and what Options.Hidden
// names are never served, and symlinks only under Options.FollowSymlinks.
package static
