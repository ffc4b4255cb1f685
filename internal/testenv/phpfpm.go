package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// PHPFPM is a php-fpm a test started with a pool config of its own.
type PHPFPM struct {
	Network string // "unix" or "tcp"
	Address string // the socket's path, or 127.0.0.1:port
	Dir     string // its folder: config, error log
}

// FPMOptions says how to run php-fpm; the zero value is 3 static workers
// on a unix socket in a temp folder.
type FPMOptions struct {
	// Listen is a socket path, "unix" for one in a temp folder, or "tcp"
	// for a free loopback port (php-fpm cannot take port 0: a port is
	// found free, and another tried when it was taken meanwhile).
	Listen string
	// Children is pm.max_children of a static pool; 0 means 3.
	Children int
	// Pool is more lines for the pool's section.
	Pool string
	// Args are more command-line arguments, such as "-d", "output_buffering=0".
	Args []string
	// NoIni runs php-fpm without php.ini and its conf.d (php-fpm -n): the
	// extensions Debian loads there (xml, intl...) are then missing.
	NoIni bool
}

// StartPHPFPM runs php-fpm as o says and returns once it accepts
// connections; the test's cleanup stops it. Without php-fpm (Debian's
// php-fpm package) the test skips, or fails when tools are required.
func StartPHPFPM(t testing.TB, o FPMOptions) *PHPFPM {
	t.Helper()
	bin := phpFPMBinary(t)
	for attempt := 0; attempt < 5; attempt++ {
		f := &PHPFPM{Network: "unix", Dir: t.TempDir()}
		switch o.Listen {
		case "", "unix":
			f.Address = filepath.Join(f.Dir, "fpm.sock")
		case "tcp":
			f.Network, f.Address = "tcp", freeLoopbackPort(t)
		default:
			f.Address = o.Listen
			if !filepath.IsAbs(o.Listen) {
				f.Network = "tcp" // host:port
			}
		}
		if f.start(t, bin, o) {
			return f
		}
	}
	t.Fatal("php-fpm did not start in 5 attempts")
	return nil
}

// phpFPMBinary finds php-fpm under the versioned name Debian gives it.
func phpFPMBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("php-fpm"); err == nil {
		return p
	}
	if m, _ := filepath.Glob("/usr/sbin/php-fpm*"); len(m) > 0 {
		return m[len(m)-1]
	}
	Missing(t, "php-fpm not found: apt-get install php-fpm")
	return ""
}

func freeLoopbackPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs php-fpm and waits until it accepts connections; false when
// it exited first (its port was taken).
func (f *PHPFPM) start(t testing.TB, bin string, o FPMOptions) bool {
	t.Helper()
	user := ""
	if os.Getuid() == 0 {
		user = "user = root\ngroup = root\n"
	}
	children := o.Children
	if children == 0 {
		children = 3
	}
	conf := fmt.Sprintf("[global]\nerror_log = %s/fpm.log\ndaemonize = no\n[www]\n%slisten = %s\npm = static\npm.max_children = %d\ncatch_workers_output = yes\n%s\n",
		f.Dir, user, f.Address, children, o.Pool)
	confPath := filepath.Join(f.Dir, "fpm.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-F", "-y", confPath, "-p", f.Dir}, o.Args...)
	if o.NoIni {
		args = append(args, "-n")
	}
	if os.Getuid() == 0 {
		args = append(args, "-R")
	}
	cmd := exec.Command(bin, args...)
	out := &Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(30 * time.Second) // a loaded machine forks a big pool slowly
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(f.Dir, "fpm.log"))
			t.Logf("php-fpm exited: %s %s", out, log)
			return false
		default:
		}
		if c, err := net.DialTimeout(f.Network, f.Address, time.Second); err == nil {
			c.Close()
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					log, _ := os.ReadFile(filepath.Join(f.Dir, "fpm.log"))
					t.Logf("php-fpm log:\n%s%s", out, log)
				}
			})
			return true
		}
		time.Sleep(20 * time.Millisecond) // poll interval while php-fpm starts
	}
	stop()
	t.Fatalf("php-fpm did not listen on %s within 30s: %s", f.Address, out)
	return false
}
