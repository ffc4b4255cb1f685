// Package session keeps a visitor's session in a signed and encrypted
// cookie (gorilla/sessions' CookieStore with every option set explicitly)
// and works out the keys it uses: configured, derived from the cluster
// secret, or kept in a key file. Template pages read and change a session
// through Store.Load and Store.Save; CGI, FastCGI and the upstreams pass it
// to another program through the Codec interface. Nothing here knows about
// the config file or the request's books beyond the client's address.
package session
