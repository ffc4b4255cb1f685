package config_test

import (
	"testing"
	"time"
)

// TestCGIConfigKeys: the [[site.cgi]] keys for applications decode with
// their defaults, and bad values are placed at their key.
func TestCGIConfigKeys(t *testing.T) {
	path := writeConfig(t, "[[site]]\n[[site.cgi]]\nprefix = \"/git/\"\nprogram = \"/bin/sh\"\n"+
		"max_time = \"2h\"\nmax_body_bytes = \"1GiB\"\nqueue_timeout = \"30s\"\n"+
		"[[site.cgi]]\nprefix = \"/x/\"\ndir = \"www\"\nmax_body_bytes = \"\"\n")
	cfg, err := loadValid(path)
	if err != nil {
		t.Fatal(err)
	}
	git, x := cfg.Sites[0].CGI[0], cfg.Sites[0].CGI[1]
	if git.Program != "/bin/sh" || git.MaxTime != 2*time.Hour || git.MaxBodyBytes != 1<<30 || git.QueueTimeout != 30*time.Second {
		t.Errorf("program mapping decoded as %+v", git)
	}
	if x.MaxBodyBytes != 0 || x.MaxTime != 0 || x.QueueTimeout != time.Second || x.Timeout != 30*time.Second {
		t.Errorf("defaults: %+v", x)
	}

	path = writeConfig(t, "[[site]]\n[[site.cgi]]\nprefix = \"/git/\"\nprogram = \"/no/such/program\"\n"+
		"max_time = \"-1s\"\nqueue_timeout = \"0s\"\n")
	_, err = loadValid(path)
	checkErrors(t, path, err, []wantErr{
		{4, 1, "site.0.cgi.0.program: program /no/such/program is not a file"},
		{5, 1, "site.0.cgi.0.max_time: must not be negative"},
		{6, 1, "site.0.cgi.0.queue_timeout: must be positive"},
	})
	path = writeConfig(t, "[[site]]\n[[site.cgi]]\nprogram = \"/bin/sh\"\ndir = \"www\"\n")
	_, err = loadValid(path)
	checkErrors(t, path, err, []wantErr{
		{3, 1, "needs prefix"},
		{4, 1, "either dir or program"},
	})
}
