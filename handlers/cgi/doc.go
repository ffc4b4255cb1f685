// Package cgi runs CGI scripts (RFC 3875) for a site's [[site.cgi]]
// mappings: ScriptAlias-style prefixes, extensions and single programs,
// index scripts, NPH scripts, request bodies fed as the script reads them,
// timeouts counted from the last byte moved, a cap on scripts running at
// once, and the kill of a script's whole process group when it hangs or
// its client leaves. It also holds what FastCGI reuses of it: the
// request's meta-variables and the reading and applying of a script's
// header block. Sessions reach scripts through session.Codec.
package cgi
