package config_test

import (
	"testing"
)

// Every route error is reported with its file:line:col and full key.
func TestConfigRouteErrors(t *testing.T) {
	path := writeConfig(t, `[[site]]

[[site.route]]
path = "/old/*"
redirect = "/new/{nope}"

[[site.route]]
path = "~("

[[site.route]]
path = "/api/*"
upstream = "app"

[[site.route]]
path = "/admin/*"
auth = "missing.htpasswd"
allow = ["10.0.0.0/33"]
rate = "fast"

[[site.route]]
path = "/x"
redirect = "/y"
rewrite = "/z"
`)
	_, err := loadValid(path)
	checkErrors(t, path, err, []wantErr{
		{5, 1, `site.0.route.0.redirect: "/new/{nope}": unknown placeholder {nope}`},
		{8, 1, `site.0.route.1.path: bad regexp`},
		{12, 1, `site.0.route.2.upstream: no [[upstream]] named "app"`},
		{16, 1, `site.0.route.3.auth: htpasswd file`},
		{17, 1, `site.0.route.3.allow: "10.0.0.0/33"`},
		{18, 1, `site.0.route.3.rate: "fast"`},
		{23, 1, `site.0.route.4.rewrite: a route has at most one action`},
	})
}

func TestConfigRouteValid(t *testing.T) {
	path := writeConfig(t, `[[site]]
[[site.route]]
path = "/*"
headers = {"X-Frame-Options" = "DENY", "-Server" = ""}
[[site.route]]
path = "/app/*"
try_files = ["{path}", "/app/index.html"]
`)
	cfg, err := loadValid(path)
	if err != nil {
		t.Fatal(err)
	}
	specs := cfg.Sites[0].RouteSpecs()
	if len(specs) != 2 || specs[1].TryFiles[1] != "/app/index.html" || specs[0].AuthRealm != "restricted" {
		t.Fatalf("specs %+v", specs)
	}
}

func TestConfigRouteUnknownKey(t *testing.T) {
	path := writeConfig(t, "[[site]]\n[[site.route]]\npath = \"/x\"\nsattus = 301\n")
	_, err := loadValid(path)
	checkErrors(t, path, err, []wantErr{{4, 1, `unknown key "site.route.sattus"`}})
}
