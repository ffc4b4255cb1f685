// Package pages serves a site's html/template pages: every *.tmpl file
// under the root is a page at its clean URL, with the site's layouts and
// partials, the functions pages call (markdown, include, the request,
// the node and its members, .Session backed by package session), reload
// on demand and re-parse in dev mode. Template sources are never served,
// and a page that fails answers through the site's error pages (package
// books); only in dev mode does the answer show the template's error.
package pages
