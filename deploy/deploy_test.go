// Package deploy holds the files that install shoal as a real server (a
// container image, a systemd unit, Kubernetes manifests); its tests check
// that they say what the docs promise and, where podman is present, that
// the image builds and its binary serves.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"shoal/internal/testenv"
	"shoal/server"
	"shoal/server/config"
)

// stopTimeout is the engine stop timeout the Dockerfile's comments ask for
// (docker run --stop-timeout 30).
const stopTimeout = 30 * time.Second

func loadValid(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := server.LoadValid(func() (*config.Config, error) { return config.Load(path) })
	if err != nil {
		t.Fatalf("shoal check -config %s:\n%v", path, err)
	}
	return cfg
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestContainerConfig: the image's config is valid, and its drain fits in
// the stop timeout the Dockerfile documents.
func TestContainerConfig(t *testing.T) {
	cfg := loadValid(t, "container/config.toml")
	if d := cfg.Server.DrainDelay + cfg.Server.ShutdownGrace; d >= stopTimeout {
		t.Errorf("drain_delay + shutdown_grace = %v, not below the documented stop timeout %v", d, stopTimeout)
	}
	if host, _, _ := net.SplitHostPort(cfg.Server.Admin); host == "127.0.0.1" || host == "localhost" {
		t.Errorf("admin on %s: probes from outside the container cannot reach it", cfg.Server.Admin)
	}
}

// TestDockerfileText checks what the image promises without building it.
func TestDockerfileText(t *testing.T) {
	src := readFile(t, "Dockerfile")
	for _, want := range []string{
		"CGO_ENABLED=0",
		"FROM scratch",
		"STOPSIGNAL SIGTERM",
		"HEALTHCHECK",
		`--stop-timeout ` + strconv.Itoa(int(stopTimeout.Seconds())),
	} {
		if !strings.Contains(src, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Count(src, "\nFROM ") < 2 {
		t.Error("Dockerfile is not multi-stage")
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(src)
	if user == nil || strings.HasPrefix(user[1], "0") || user[1] == "root" {
		t.Errorf("Dockerfile must run as a non-root user, got %v", user)
	}
}

// TestSystemdUnit checks the unit: notify type, reload by SIGHUP, a stop
// timeout longer than the default drain.
func TestSystemdUnit(t *testing.T) {
	unit := readFile(t, "systemd/shoal.service")
	keys := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("systemd/shoal.service: not key=value: %q", line)
			continue
		}
		keys[k] = v
	}
	for k, want := range map[string]string{"Type": "notify", "KillSignal": "SIGTERM", "NotifyAccess": "main"} {
		if keys[k] != want {
			t.Errorf("%s=%q, want %q", k, keys[k], want)
		}
	}
	if !strings.Contains(keys["ExecReload"], "-HUP $MAINPID") {
		t.Errorf("ExecReload=%q must send SIGHUP", keys["ExecReload"])
	}
	if !strings.Contains(keys["ExecStart"], "shoal") || keys["User"] == "" || keys["User"] == "root" {
		t.Errorf("ExecStart=%q User=%q", keys["ExecStart"], keys["User"])
	}
	stop, err := strconv.Atoi(keys["TimeoutStopSec"])
	def := config.Defaults().Server
	if err != nil || time.Duration(stop)*time.Second <= def.DrainDelay+def.ShutdownGrace {
		t.Errorf("TimeoutStopSec=%q must exceed the default drain_delay + shutdown_grace (%v)", keys["TimeoutStopSec"], def.DrainDelay+def.ShutdownGrace)
	}
}

// manifest is one YAML document, kept as lines; the checks are
// structural (no YAML library: the files are small and ours).
type manifest struct {
	file, kind, name string
	text             string
}

func readManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	var out []manifest
	for _, f := range files {
		src := readFile(t, f)
		for i, line := range strings.Split(src, "\n") {
			if strings.Contains(line, "\t") {
				t.Errorf("%s:%d: a tab (YAML indents with spaces)", f, i+1)
			}
			if ind := len(line) - len(strings.TrimLeft(line, " ")); ind%2 != 0 && strings.TrimSpace(line) != "" &&
				!strings.HasPrefix(strings.TrimSpace(line), "#") {
				t.Errorf("%s:%d: odd indentation %d", f, i+1, ind)
			}
		}
		for _, doc := range strings.Split(src, "\n---\n") {
			m := manifest{file: f, text: doc,
				kind: field(doc, `(?m)^kind: (\S+)`), name: field(doc, `(?m)^  name: (\S+)`)}
			if field(doc, `(?m)^apiVersion: (\S+)`) == "" || m.kind == "" || m.name == "" {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", f)
			}
			out = append(out, m)
		}
	}
	return out
}

func field(text, re string) string {
	if m := regexp.MustCompile(re).FindStringSubmatch(text); m != nil {
		return m[1]
	}
	return ""
}

func find(t *testing.T, ms []manifest, kind, name string) manifest {
	t.Helper()
	for _, m := range ms {
		if m.kind == kind && (name == "" || m.name == name) {
			return m
		}
	}
	t.Fatalf("deploy/k8s has no %s %s", kind, name)
	return manifest{}
}

func mustContain(t *testing.T, m manifest, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(m.text, w) {
			t.Errorf("%s (%s %s) lacks %q", m.file, m.kind, m.name, w)
		}
	}
}

// TestKubernetesManifests checks what the docs promise of deploy/k8s: a
// headless Service the config joins by name, readiness on /healthz on the
// admin port, a preStop, the secret from a Secret, and a grace period
// longer than preStop + drain.
func TestKubernetesManifests(t *testing.T) {
	ms := readManifests(t)
	peers := find(t, ms, "Service", "shoal-peers")
	mustContain(t, peers, "clusterIP: None", "publishNotReadyAddresses: true", "port: 7946", "protocol: UDP")
	sts := find(t, ms, "StatefulSet", "")
	mustContain(t, sts, "serviceName: shoal-peers", "readinessProbe:", "path: /healthz", "port: admin",
		"containerPort: 9180", "preStop:", "name: SHOAL_SECRET", "secretKeyRef:", "runAsNonRoot: true")

	// The config in the ConfigMap decodes with no unknown key, joins the
	// headless Service, and drains within the grace period.
	cm := find(t, ms, "ConfigMap", "shoal-config")
	_, body, ok := strings.Cut(cm.text, "config.toml: |\n")
	if !ok {
		t.Fatal("ConfigMap shoal-config has no config.toml")
	}
	var toml strings.Builder
	for _, line := range strings.Split(body, "\n") {
		toml.WriteString(strings.TrimPrefix(line, "    ") + "\n")
	}
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(toml.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the ConfigMap's config.toml: %v", err)
	}
	if len(cfg.Cluster.Join) != 1 || !strings.HasPrefix(cfg.Cluster.Join[0], "shoal-peers:") || !cfg.Cluster.Enabled {
		t.Errorf("cluster.join = %q (enabled %v), want the headless Service shoal-peers", cfg.Cluster.Join, cfg.Cluster.Enabled)
	}
	if host, _, _ := net.SplitHostPort(cfg.Server.Admin); host == "127.0.0.1" {
		t.Error("admin on loopback: the kubelet's probes cannot reach it")
	}
	grace, _ := strconv.Atoi(field(sts.text, `terminationGracePeriodSeconds: (\d+)`))
	preStop, _ := strconv.Atoi(field(sts.text, `(?s)preStop:.*?seconds: (\d+)`))
	need := time.Duration(preStop)*time.Second + cfg.Server.DrainDelay + cfg.Server.ShutdownGrace
	if time.Duration(grace)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds %d must exceed preStop %ds + drain_delay + shutdown_grace (%v)", grace, preStop, need)
	}
}

// TestDockerfile builds the image with podman and runs the binary copied
// out of it (running a container fails on some machines: crun cannot set
// rlimits there), checking it is static, serves and drains on SIGTERM.
// The builder stage uses a local image made from this machine's Go and a
// vendored copy of the modules, so the build needs no network.
func TestDockerfile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a container image: not with -short")
	}
	podman := testenv.LookPath(t, "podman", "podman")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}

	goImage := "localhost/shoal-test-go:" + runtime.Version()
	if exec.CommandContext(ctx, podman, "image", "exists", goImage).Run() != nil {
		cf := filepath.Join(t.TempDir(), "Containerfile")
		os.WriteFile(cf, []byte("FROM scratch\nCOPY . /usr/local/go\n"+
			"ENV PATH=/usr/local/go/bin HOME=/tmp GOCACHE=/tmp/gocache GOFLAGS=-mod=vendor\n"), 0o644)
		run(podman, "build", "-q", "-f", cf, "-t", goImage, runtime.GOROOT())
	}

	// The build context: this repository without .git, with its modules
	// vendored from the local module cache.
	src := filepath.Join(t.TempDir(), "src")
	if err := copyRepo("..", src); err != nil {
		t.Fatal(err)
	}
	vendor := exec.CommandContext(ctx, "go", "mod", "vendor")
	vendor.Dir = src
	vendor.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	if out, err := vendor.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}

	tag := fmt.Sprintf("localhost/shoal-test:%d", time.Now().UnixNano())
	// The builder stage stays behind as an untagged image (half a GB):
	// remove those this build made.
	before := run(podman, "images", "-q", "--no-trunc", "--filter", "dangling=true")
	t.Cleanup(func() {
		after, _ := exec.Command(podman, "images", "-q", "--no-trunc", "--filter", "dangling=true").Output()
		for _, id := range strings.Fields(string(after)) {
			if !strings.Contains(before, id) {
				exec.Command(podman, "rmi", "-f", id).Run()
			}
		}
	})
	run(podman, "build", "-q", "--isolation=chroot", "--format", "docker", "--build-arg", "GO_IMAGE="+goImage,
		"-f", filepath.Join(src, "deploy", "Dockerfile"), "-t", tag, src)
	t.Cleanup(func() { exec.Command(podman, "rmi", "-f", tag).Run() })

	inspect := run(podman, "image", "inspect", "--format",
		"{{.Config.User}}|{{.Config.StopSignal}}|{{.Config.Entrypoint}}|{{if .Config.Healthcheck}}{{.Config.Healthcheck.Test}}{{end}}", tag)
	parts := strings.Split(strings.TrimSpace(inspect), "|")
	if len(parts) != 4 || parts[0] != "65532:65532" || parts[1] != "SIGTERM" ||
		!strings.Contains(parts[2], "/usr/local/bin/shoal") || !strings.Contains(parts[3], "members") {
		t.Errorf("image config user|stopsignal|entrypoint|healthcheck = %q", inspect)
	}

	ctr := strings.TrimSpace(run(podman, "create", tag))
	t.Cleanup(func() { exec.Command(podman, "rm", "-f", ctr).Run() })
	out := t.TempDir()
	run(podman, "cp", ctr+":/usr/local/bin/shoal", filepath.Join(out, "shoal"))
	run(podman, "cp", ctr+":/srv/shoal", filepath.Join(out, "srv"))
	bin := filepath.Join(out, "shoal")
	assertStatic(t, bin)
	serveAndDrain(t, bin, filepath.Join(out, "srv"))
}

// copyRepo copies the repository at from to dst, leaving out .git and
// local state.
func copyRepo(from, dst string) error {
	root, err := filepath.Abs(from)
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".shoal" || d.Name() == "vendor" || rel == "bench/results") {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		}
		return nil // symlinks and the like: not part of the build
	})
}

func copyFile(from, to string, perm fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// assertStatic fails unless bin is an ELF file with no program
// interpreter, i.e. statically linked, as scratch needs.
func assertStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the image's binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the image's binary is dynamically linked (has PT_INTERP); scratch has no libc")
		}
	}
}

// serveAndDrain runs the image's binary on the image's config with free
// loopback ports, checks / and /healthz, then SIGTERM: exit 0.
func serveAndDrain(t *testing.T, bin, dir string) {
	t.Helper()
	var cmd *exec.Cmd
	var done chan error
	var httpAddr string
	var logs bytes.Buffer
	for attempt := 0; ; attempt++ {
		var adminAddr string
		httpAddr, adminAddr = freeAddr(t), freeAddr(t)
		logs.Reset()
		cmd = exec.Command(bin, "-config", filepath.Join(dir, "config.toml"), "-http", httpAddr, "-admin", adminAddr)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done = make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if waitHealthy(adminAddr, done) {
			break
		}
		cmd.Process.Kill()
		<-done
		if attempt == 2 { // a port taken between freeAddr and the start
			t.Fatalf("the image's binary did not serve:\n%s", logs.String())
		}
	}
	resp, err := http.Get("http://" + httpAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "shoal is running") {
		t.Errorf("GET / from the image's binary: %d %q", resp.StatusCode, body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		<-done
		t.Errorf("no exit within %v of SIGTERM\n%s", stopTimeout, logs.String())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHealthy polls /healthz until 200 (true), the process exits or 20 s
// pass (false). An exit is left in done for the caller.
func waitHealthy(admin string, done chan error) bool {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := client.Get("http://" + admin + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
		select {
		case err := <-done:
			done <- err
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}
