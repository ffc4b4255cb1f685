// Package fastcgi is a FastCGI client for the responder role (php-fpm and
// its kind), written from the FastCGI 1.0 specification: records, the
// params and stdin streams toward the application, stdout and stderr back,
// connections kept open (FCGI_KEEP_CONN) and reused from a bounded pool per
// target, and an http.Handler on top that speaks CGI's conventions (params
// as CGI meta-variables, the CGI-style header block parsed by the same code
// as cgi.Handler's). It knows nothing of sites or the cluster.
package fastcgi
