package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"shoal/internal/testenv"
)

// appRecipeRE finds the recipes of docs/applications.md: a marker
// comment, then a TOML block.
var appRecipeRE = regexp.MustCompile("(?s)<!-- app: ([a-z-]+) -->\\s*```toml\\n(.*?)```")

// appRecipe returns the recipe name of docs/applications.md with each
// pair of repl (old, new) replaced; an old string missing from the
// recipe fails the test, so the page and the test cannot drift apart.
func appRecipe(t *testing.T, name string, repl ...string) string {
	t.Helper()
	src, err := os.ReadFile("../../docs/applications.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range appRecipeRE.FindAllStringSubmatch(string(src), -1) {
		if m[1] != name {
			continue
		}
		cfg := m[2]
		for i := 0; i+1 < len(repl); i += 2 {
			if !strings.Contains(cfg, repl[i]) {
				t.Fatalf("recipe %s no longer has %q", name, repl[i])
			}
			cfg = strings.ReplaceAll(cfg, repl[i], repl[i+1])
		}
		return cfg
	}
	t.Fatalf("docs/applications.md has no recipe %q", name)
	return ""
}

// recipeDir makes a site folder with www/index.html and config.toml.
func recipeDir(t *testing.T, cfg string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "www", "index.html"), "<h1>static</h1>\n")
	writeFile(t, filepath.Join(dir, "config.toml"), cfg)
	return dir
}

// testApp is the Go application behind the upstream recipes: a JSON
// echo, an event stream that holds its second event until release is
// closed, a WebSocket echo and a health check.
type testApp struct {
	release chan struct{}
}

func (a *testApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz":
		io.WriteString(w, "ok")
	case strings.HasSuffix(r.URL.Path, "/events"):
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-a.release:
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Second):
		}
		io.WriteString(w, "data: two\n\n")
	case r.URL.Path == "/ws":
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo "), msg...)); err != nil {
				return
			}
		}
	default:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"path": r.URL.Path, "xff": r.Header.Get("X-Forwarded-For"), "rid": r.Header.Get("X-Request-ID"),
		})
	}
}

// serveApp runs a testApp on l until the test ends.
func serveApp(t *testing.T, l net.Listener) *testApp {
	t.Helper()
	app := &testApp{release: make(chan struct{})}
	srv := &http.Server{Handler: app}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() {
		select {
		case <-app.release:
		default:
			close(app.release)
		}
		srv.Close()
		<-done
	})
	return app
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// getJSON fetches path from p and decodes the app's JSON echo.
func getJSON(t *testing.T, p *proc, path string) map[string]string {
	t.Helper()
	resp, body := p.get(path)
	var got map[string]string
	if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil {
		t.Fatalf("%s: %d %q, want the app's JSON", path, resp.StatusCode, body)
	}
	return got
}

// TestE2EAppPort: the app-on-a-port recipe: /api/ reaches the app with
// forwarding headers, an event stream arrives event by event, the rest
// of the site is static.
func TestE2EAppPort(t *testing.T) {
	l := listenTCP(t)
	app := serveApp(t, l)
	p := startShoal(t, recipeDir(t, appRecipe(t, "port", "127.0.0.1:3000", l.Addr().String())))

	got := getJSON(t, p, "/api/hello?x=1")
	if got["path"] != "/api/hello" || got["xff"] != "127.0.0.1" || got["rid"] == "" {
		t.Errorf("the app saw %v", got)
	}
	if resp, body := p.get("/"); resp.StatusCode != 200 || string(body) != "<h1>static</h1>\n" {
		t.Errorf("/: %d %q, want the static index", resp.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	// The app holds "two" until release: "one" must arrive before it.
	if line, err := r.ReadString('\n'); err != nil || line != "data: one\n" {
		t.Fatalf("first event: %q %v", line, err)
	}
	close(app.release)
	rest, err := io.ReadAll(r)
	if err != nil || !strings.Contains(string(rest), "data: two\n") {
		t.Errorf("rest of the stream: %q %v", rest, err)
	}
}

// TestE2EAppUnixSocket: the unix-socket recipe, with strip_prefix.
func TestE2EAppUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveApp(t, l)
	p := startShoal(t, recipeDir(t, appRecipe(t, "unix", "/run/app/app.sock", sock)))
	if got := getJSON(t, p, "/app/users/7"); got["path"] != "/users/7" {
		t.Errorf("the app saw %v, want /users/7 (prefix stripped)", got)
	}
	if resp, _ := p.get("/index.html"); resp.StatusCode != 200 {
		t.Errorf("/index.html: %d", resp.StatusCode)
	}
}

// TestE2EWebSocket: the WebSocket recipe: messages both ways through a
// real shoal.
func TestE2EWebSocket(t *testing.T) {
	l := listenTCP(t)
	serveApp(t, l)
	p := startShoal(t, recipeDir(t, appRecipe(t, "websocket", "127.0.0.1:3001", l.Addr().String())))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+p.addr+"/ws", nil)
	if err != nil {
		t.Fatalf("dial through shoal: %v", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for _, m := range []string{"one", "two", strings.Repeat("x", 100<<10)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo "+m {
			t.Fatalf("echo of %.10q: %.20q %v", m, got, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// startPHPFPM runs php-fpm listening on listen (a unix socket path or
// host:port) with children workers, and waits until it accepts; with its
// php.ini, for the extensions DokuWiki needs.
func startPHPFPM(t *testing.T, listen string, children int) {
	t.Helper()
	testenv.StartPHPFPM(t, testenv.FPMOptions{Listen: listen, Children: children})
}

// TestE2EPHPFrontController: the php-fpm recipe: a pretty URL runs
// index.php, files are files, scripts run by name.
func TestE2EPHPFrontController(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fpm.sock")
	startPHPFPM(t, sock, 4)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "index.php"), `<?php echo "front ", $_SERVER['REQUEST_URI'], " ", $_SERVER['SCRIPT_NAME'], " ", $_GET['p'] ?? "";`)
	writeFile(t, filepath.Join(root, "info.php"), `<?php echo "info ", $_SERVER['SCRIPT_NAME'], " ", $_GET['q'] ?? "";`)
	writeFile(t, filepath.Join(root, "style.css"), "body{}\n")
	cfg := appRecipe(t, "php", "/run/php/php8.2-fpm.sock", sock, "/srv/www", root)
	p := startShoal(t, recipeDir(t, cfg))
	for _, tc := range []struct{ path, want string }{
		{"/2024/hello-world/?p=7", "front /2024/hello-world/?p=7 /index.php 7"},
		{"/", "front / /index.php "},
		{"/style.css", "body{}\n"},
		{"/info.php?q=1", "info /info.php 1"},
	} {
		if resp, body := p.get(tc.path); resp.StatusCode != 200 || string(body) != tc.want {
			t.Errorf("%s: %d %q, want %q", tc.path, resp.StatusCode, body, tc.want)
		}
	}
}

// writeHtpasswd writes an htpasswd file of bcrypt hashes.
func writeHtpasswd(t *testing.T, path string, users ...string) {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(users); i += 2 {
		h, err := bcrypt.GenerateFromPassword([]byte(users[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", users[i], h)
	}
	writeFile(t, path, b.String())
}

// TestE2EGitAuthPush: the git recipe: anonymous clone; a push without or
// with a wrong password fails with 401 and changes nothing; with the
// password it lands.
func TestE2EGitAuthPush(t *testing.T) {
	s := newAppsSite(t)
	writeFile(t, filepath.Join(s.dir, "config.toml"), appRecipe(t, "git", "/srv/git", s.repos))
	writeHtpasswd(t, filepath.Join(s.dir, "git.htpasswd"), "alice", "s3cret")
	p := startShoal(t, s.dir)
	bare := filepath.Join(s.repos, "small.git")
	before := s.git(t, bare, "rev-parse", "main")

	work := filepath.Join(s.dir, "work")
	s.git(t, s.dir, "clone", "-q", p.url+"/git/small.git", work)
	writeFile(t, filepath.Join(work, "note.txt"), "pushed through shoal\n")
	s.git(t, work, "add", "note.txt")
	s.git(t, work, "commit", "-q", "-m", "authenticated push")

	for _, tc := range []struct{ url, want string }{
		{p.url + "/git/small.git", "could not read Username"}, // asked for one: 401
		{"http://alice:wrong@" + p.addr + "/git/small.git", "HTTP 401"},
	} {
		out, err := s.gitCmd(context.Background(), work, "push", "-q", tc.url, "main")
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("push to %s: %v, want a failure saying %q:\n%s", tc.url, err, tc.want, out)
		}
	}
	if got := s.git(t, bare, "rev-parse", "main"); got != before {
		t.Fatalf("a refused push changed main")
	}
	resp, err := http.Post(p.url+"/git/small.git/git-receive-pack", "application/x-git-receive-pack-request", strings.NewReader("0000"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `realm="git"`) {
		t.Errorf("anonymous git-receive-pack: %d %v, want 401 with the git realm", resp.StatusCode, resp.Header)
	}
	s.git(t, work, "push", "-q", "http://alice:s3cret@"+p.addr+"/git/small.git", "main")
	if got, want := s.git(t, bare, "rev-parse", "main"), s.git(t, work, "rev-parse", "HEAD"); got != want {
		t.Errorf("after the push main is %s, want %s", got, want)
	}
}

// TestE2ECgitRecipe: the cgit recipe with the test's cgitrc.
func TestE2ECgitRecipe(t *testing.T) {
	s := newAppsSite(t)
	writeFile(t, filepath.Join(s.dir, "config.toml"), appRecipe(t, "cgit", "/etc/cgitrc", filepath.Join(s.dir, "cgitrc")))
	p := startShoal(t, s.dir)
	for _, tc := range []struct{ path, want string }{
		{"/cgit/", "small.git"},
		{"/cgit/small.git/tree/", "data.bin"},
		{"/cgit/small.git/log/", "seed small.git"},
	} {
		if resp, body := p.get(tc.path); resp.StatusCode != 200 || !bytes.Contains(body, []byte(tc.want)) {
			t.Errorf("%s: %d, body without %q:\n%.300s", tc.path, resp.StatusCode, tc.want, body)
		}
	}
}

// TestE2EClusterPHPRecipe: the one-php-fpm-per-node recipe passes
// `shoal check` as written; then two nodes run it from one config file
// (on one machine both name the same php-fpm on 127.0.0.1, and SHOAL_NODE
// tells which node ran a script). With capacity lowered to 2, six slow
// PHP requests at a time sent to node a are spread to node b too.
func TestE2EClusterPHPRecipe(t *testing.T) {
	fpm := freeAddr(t)
	startPHPFPM(t, fpm, 8) // fewer than the nodes' pools: they free workers for waiting requests
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "work.php"), "<?php usleep(300000); echo \"node=\", $_SERVER['SHOAL_NODE'], \"\\n\";")
	cfg := appRecipe(t, "cluster-php", "127.0.0.1:9000", fpm, "/srv/www", root)
	dir := recipeDir(t, cfg)
	if code, out, errOut := runShoal(t, dir, "check", "-config", "config.toml"); code != 0 {
		t.Fatalf("shoal check: %d %s %s", code, out, errOut)
	}
	// The nodes join by flag; capacity 2 makes six requests overflow.
	cfg = strings.Replace(cfg, `join = ["10.0.0.1:7946", "10.0.0.2:7946"]`, "join = []\ncapacity = 2", 1)
	cl := newCClusterWith(t, 2, "[log]\naccess = \"off\"\n"+cfg)
	served, failures := cl.load(cl.nodes["a"], 6, 5, "/work.php", nil)
	if len(failures) > 0 {
		t.Fatalf("%d requests failed: %v", len(failures), failures[:min(5, len(failures))])
	}
	t.Logf("served %v", served)
	if served["a"]+served["b"] != 30 || served["b"] < 5 || served["a"] < 5 {
		t.Errorf("served %v: want 30 spread over a and b (at least 5 each)", served)
	}
}

const (
	dokuShare = "/usr/share/dokuwiki"
	dokuData  = "/var/lib/dokuwiki/data"
	dokuConf  = "/etc/dokuwiki"
)

// newDokuWiki copies Debian's DokuWiki into a folder the test owns:
// the code from /usr/share/dokuwiki (lib/tpl and lib/plugins stay links
// into /var/lib, as Debian has them), conf/ from /etc/dokuwiki with a
// local.php pointing savedir at its own data/, and users.auth.php with
// alice (password s3cret, admin). Debian's inc/preload.php, which
// points DokuWiki at /etc/dokuwiki, is left out of the copy.
func newDokuWiki(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(dokuShare + "/doku.php"); err != nil {
		testenv.Missing(t, "DokuWiki not found: apt-get install dokuwiki")
	}
	wiki := filepath.Join(t.TempDir(), "wiki")
	for _, c := range [][]string{
		{"cp", "-a", dokuShare, wiki},
		{"cp", "-a", dokuData, filepath.Join(wiki, "data")},
		{"cp", "-a", dokuConf, filepath.Join(wiki, "conf")},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	for _, f := range []string{"inc/preload.php", "conf/acl.auth.php", "conf/users.auth.php", "conf/local.php"} {
		if err := os.Remove(filepath.Join(wiki, f)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(wiki, "conf", "local.php"), fmt.Sprintf(`<?php
$conf['title'] = 'shoal test wiki';
$conf['savedir'] = %q;
$conf['useacl'] = 1;
$conf['superuser'] = '@admin';
$conf['updatecheck'] = 0;
`, filepath.Join(wiki, "data")))
	writeFile(t, filepath.Join(wiki, "conf", "acl.auth.php"), "*\t@ALL\t1\n*\t@user\t16\n")
	h, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(wiki, "conf", "users.auth.php"), fmt.Sprintf("alice:%s:Alice:alice@example.test:admin,user\n", h))
	return wiki
}

var (
	inputRE = regexp.MustCompile(`<input[^>]*>`)
	attrRE  = regexp.MustCompile(`(name|value|type)="([^"]*)"`)
)

// formFields returns the hidden inputs of the form whose id is id in
// page, HTML entities decoded.
func formFields(t *testing.T, page, id string) url.Values {
	t.Helper()
	start := strings.Index(page, `id="`+id+`"`)
	if start < 0 {
		t.Fatalf("no form %s in:\n%.2000s", id, page)
	}
	form := page[start:]
	if end := strings.Index(form, "</form>"); end >= 0 {
		form = form[:end]
	}
	v := url.Values{}
	for _, in := range inputRE.FindAllString(form, -1) {
		a := map[string]string{}
		for _, m := range attrRE.FindAllStringSubmatch(in, -1) {
			a[m[1]] = html.UnescapeString(m[2])
		}
		if a["type"] == "hidden" && a["name"] != "" {
			v.Set(a["name"], a["value"])
		}
	}
	return v
}

// wikiUser is a browser: a cookie jar against one shoal.
type wikiUser struct {
	t    *testing.T
	c    *http.Client
	base string
}

func (u *wikiUser) do(req *http.Request) (int, string) {
	u.t.Helper()
	resp, err := u.c.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		u.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func (u *wikiUser) get(path string) (int, string) {
	u.t.Helper()
	req, _ := http.NewRequest("GET", u.base+path, nil)
	return u.do(req)
}

func (u *wikiUser) post(path string, v url.Values) (int, string) {
	u.t.Helper()
	req, _ := http.NewRequest("POST", u.base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return u.do(req)
}

// tinyPNG is a valid 2x2 PNG (DokuWiki checks what it is given).
func tinyPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	img.Set(1, 1, color.RGBA{200, 10, 10, 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestE2EDokuWiki: the DokuWiki recipe on php-fpm, driven as a user: log
// in, edit and save a page with the form's security token, see it
// rendered, upload an image through the media manager and fetch it back;
// the wiki's data, conf and inc folders are never served.
func TestE2EDokuWiki(t *testing.T) {
	wiki := newDokuWiki(t)
	sock := filepath.Join(t.TempDir(), "fpm.sock")
	startPHPFPM(t, sock, 4)
	p := startShoal(t, recipeDir(t, appRecipe(t, "dokuwiki", "/run/php/php8.2-fpm.sock", sock, "/srv/dokuwiki", wiki)))
	jar, _ := cookiejar.New(nil)
	u := &wikiUser{t: t, c: &http.Client{Jar: jar, Timeout: 20 * time.Second}, base: p.url}

	if code, body := u.get("/"); code != 200 || !strings.Contains(body, "shoal test wiki") {
		t.Fatalf("/: %d %.1000s", code, body)
	}
	if code, _ := u.get("/lib/tpl/dokuwiki/images/logo.png"); code != 200 {
		t.Errorf("template image through Debian's symlink: %d", code)
	}

	_, page := u.get("/doku.php?id=start&do=login")
	login := formFields(t, page, "dw__login")
	login.Set("u", "alice")
	login.Set("p", "s3cret")
	if code, body := u.post("/doku.php?id=start", login); code != 200 || !strings.Contains(body, "do=logout") {
		t.Fatalf("login: %d, no logout link:\n%.2000s", code, body)
	}

	const text = "Shoal serves this wiki through php-fpm."
	_, page = u.get("/doku.php?id=playground:shoal&do=edit")
	edit := formFields(t, page, "dw__editform")
	if edit.Get("sectok") == "" {
		t.Fatalf("no sectok in the edit form: %v", edit)
	}
	edit.Set("wikitext", "====== Shoal ======\n"+text+"\n")
	edit.Set("summary", "e2e")
	edit.Set("do[save]", "Save")
	if code, body := u.post("/doku.php?id=playground:shoal", edit); code != 200 || !strings.Contains(body, text) {
		t.Fatalf("save: %d, page without the text:\n%.2000s", code, body)
	}
	if code, body := u.get("/doku.php?id=playground:shoal"); code != 200 || !strings.Contains(body, "<h1") || !strings.Contains(body, text) {
		t.Errorf("page after save: %d %.1000s", code, body)
	}
	if src, err := os.ReadFile(filepath.Join(wiki, "data", "pages", "playground", "shoal.txt")); err != nil || !strings.Contains(string(src), text) {
		t.Errorf("page source on disk: %q %v", src, err)
	}

	img := tinyPNG(t)
	var mp bytes.Buffer
	w := multipart.NewWriter(&mp)
	for k, v := range map[string]string{"sectok": edit.Get("sectok"), "ns": "playground", "mediaid": "shoal.png"} {
		w.WriteField(k, v)
	}
	fw, _ := w.CreateFormFile("upload", "shoal.png")
	fw.Write(img)
	w.Close()
	req, _ := http.NewRequest("POST", p.url+"/lib/exe/mediamanager.php?ns=playground", &mp)
	req.Header.Set("Content-Type", w.FormDataContentType())
	if code, body := u.do(req); code != 200 {
		t.Errorf("upload: %d %.1000s", code, body)
	}
	if got, err := os.ReadFile(filepath.Join(wiki, "data", "media", "playground", "shoal.png")); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("uploaded file on disk: %v (%d bytes)", err, len(got))
	}
	if code, body := u.get("/lib/exe/fetch.php?media=playground:shoal.png"); code != 200 || body != string(img) {
		t.Errorf("fetch of the upload: %d (%d bytes)", code, len(body))
	}

	for _, path := range []string{
		"/data/pages/playground/shoal.txt",
		"/data/media/playground/shoal.png",
		"/conf/users.auth.php",
		"/conf/local.php",
		"/inc/init.php",
		"/bin/dwpage.php",
		"/vendor/autoload.php",
	} {
		if code, body := u.get(path); code != 404 || strings.Contains(body, "alice") || strings.Contains(body, text) {
			t.Errorf("%s: %d, want 404 and nothing of the file", path, code)
		}
	}
}
