// Command shoal is a web server that hosts sites directly and scales by
// starting more copies of itself. See README.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"shoal/internal/sdnotify"
	"shoal/server"
	"shoal/server/config"
)

// Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or bad config.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	sub := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "serve":
		return serve(args, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "members":
		return members(args, stdout, stderr)
	case "keygen":
		return keygen(stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "shoal", version())
		return exitOK
	case "help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "shoal: unknown command %q\n", sub)
		usage(stderr)
		return exitUsage
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  shoal [serve] [-config FILE] [flags]   run a node (default)
  shoal check   [-config FILE]           validate the config; print every error
  shoal members [-admin ADDR]            the cluster as a node sees it
  shoal keygen                           print a fresh random secret (base64)
  shoal version
`)
}

func version() string {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}

// overrides are the flags that change the config file's values, so a peer
// can start with no file of its own.
type overrides struct {
	config                         string
	name, http, https, admin, root string
	gossip, join                   string
	set                            map[string]bool
}

func (o *overrides) register(fs *flag.FlagSet) {
	fs.StringVar(&o.config, "config", "", "config file (default ./config.toml when it exists and -root is not given, else built-in defaults)")
	fs.StringVar(&o.name, "name", "", "node name (server.name)")
	fs.StringVar(&o.http, "http", "", "HTTP listen address (server.http), e.g. :8080; -http \"\" disables the HTTP listener")
	fs.StringVar(&o.https, "https", "", "HTTPS listen address (server.https), e.g. :8443; -https \"\" disables it")
	fs.StringVar(&o.admin, "admin", "", "admin listen address (server.admin), e.g. 127.0.0.1:9180; -admin \"\" disables it")
	fs.StringVar(&o.root, "root", "", "document root of the first site (site.root)")
	fs.StringVar(&o.gossip, "gossip", "", "gossip bind address (cluster.gossip); turns the cluster on")
	fs.StringVar(&o.join, "join", "", "peers to join, ADDR[,ADDR] (cluster.join); turns the cluster on")
}

// parse parses args, recording which flags were given (so -http "" can
// disable a listener).
func (o *overrides) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	return nil
}

func (o *overrides) configPath() string {
	path, _ := o.configSource()
	return path
}

// configSource names the config file to read ("" for the built-in
// defaults) and why, for the log: a node that silently picked up
// ./config.toml from the folder it was started in is a riddle.
func (o *overrides) configSource() (path, why string) {
	switch {
	case o.config != "":
		return o.config, "named by -config"
	case o.set["root"]:
		// -root serves a folder: a config.toml that happens to sit in the
		// working directory (its error pages, its root) is not read.
		return "", "built-in defaults: -root without -config, ./config.toml not read"
	}
	if _, err := os.Stat("config.toml"); err == nil {
		return "config.toml", "found as ./config.toml in the working directory"
	}
	return "", "built-in defaults: no -config and no ./config.toml in the working directory"
}

// load reads the config file and applies the flags over it.
func (o *overrides) load() (*config.Config, error) {
	cfg, loadErr := config.Load(o.configPath())
	if cfg == nil {
		return nil, loadErr
	}
	s := &cfg.Server
	for flagName, dst := range map[string]*string{"name": &s.Name, "http": &s.HTTP, "https": &s.HTTPS, "admin": &s.Admin} {
		if o.set[flagName] {
			*dst = map[string]string{"name": o.name, "http": o.http, "https": o.https, "admin": o.admin}[flagName]
		}
	}
	if o.set["root"] {
		if len(cfg.Sites) == 0 {
			cfg.Sites = []config.Site{config.DefaultSite()}
		}
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		root := o.root
		if !strings.HasPrefix(root, "/") {
			root = wd + "/" + root // -root is relative to where shoal was started
		}
		cfg.Sites[0].Root = root
	}
	if o.set["gossip"] {
		cfg.Cluster.Gossip = o.gossip
		cfg.Cluster.Enabled = true
	}
	if o.set["join"] {
		cfg.Cluster.Join = splitList(o.join)
		cfg.Cluster.Enabled = true
	}
	return cfg, loadErr // decode errors travel with the config, for Validate to add to
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o overrides
	o.register(fs)
	if err := o.parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "shoal:", err)
		return exitUsage
	}
	level := new(slog.LevelVar)
	errLog := newErrorLogWriter(stderr) // a stalled stderr must not block requests that log
	defer errLog.Close(5 * time.Second)
	logger := slog.New(slog.NewTextHandler(errLog, &slog.HandlerOptions{Level: level}))
	node, err := server.New(o.load, server.Options{Version: version(), Logger: logger, Level: level, ProcessMetrics: true})
	if err != nil {
		printConfigError(stderr, err, &o)
		return exitUsage
	}
	if path, why := o.configSource(); path != "" {
		logger.Info("config "+path+" ("+why+")", "file", path)
	} else {
		logger.Info("config: " + why)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	notify := sdnotify.New(os.Getenv("NOTIFY_SOCKET"), logger) // systemd Type=notify; nil otherwise
	go func() {
		ready := node.Ready()
		for {
			select {
			case <-ready:
				notify.Ready()
				ready = nil
			case <-hup:
				notify.Reloading()
				_ = node.Reload() // logged by Reload; the old config keeps serving
				if ready == nil {
					notify.Ready() // back from reloading; never before the first start
				}
			case <-usr1:
				reopenLogs(node, logger)
			case <-ctx.Done():
				notify.Stopping()
				return
			}
		}
	}()
	if err := node.Run(ctx); err != nil {
		logger.Error("shoal failed", "err", err)
		return exitFailure
	}
	return exitOK
}

// reopenLogs answers SIGUSR1 (logrotate's postrotate): the access log
// file is opened again under its configured name.
func reopenLogs(node *server.Node, logger *slog.Logger) {
	if err := node.ReopenLogs(); err != nil {
		logger.Error("reopening log files failed: still writing to the old file", "err", err)
		return
	}
	logger.Info("log files reopened")
}

// printConfigError prints each config error on its line; an error in a
// value given by a flag names the flag, not the file's line, since the
// file does not hold that value.
func printConfigError(w io.Writer, err error, o *overrides) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			if f := o.flagFor(e.Key); f != "" {
				fmt.Fprintf(w, "-%s flag: %s\n", f, e.Msg)
				continue
			}
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, "shoal:", err)
}

// flagFor returns the name of the flag given on the command line that set
// key, or "".
func (o *overrides) flagFor(key string) string {
	flag := map[string]string{"server.name": "name", "server.http": "http", "server.https": "https",
		"server.admin": "admin", "site.0.root": "root", "cluster.gossip": "gossip", "cluster.join": "join"}[key]
	if o.set[flag] {
		return flag
	}
	return ""
}

func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o overrides
	o.register(fs)
	if err := o.parse(fs, args); err != nil {
		fmt.Fprintln(stderr, "shoal:", err)
		return exitUsage
	}
	if _, err := server.LoadValid(o.load); err != nil {
		printConfigError(stderr, err, &o)
		return exitUsage
	}
	name, why := o.configSource()
	if name == "" {
		name = "built-in defaults"
	}
	fmt.Fprintf(stdout, "%s: ok (%s)\n", name, why)
	return exitOK
}

func keygen(stdout, stderr io.Writer) int {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		fmt.Fprintln(stderr, "shoal:", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
	return exitOK
}

func members(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("members", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "127.0.0.1:9180", "admin address of the node to ask")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := printMembers(ctx, *admin, stdout); err != nil {
		fmt.Fprintln(stderr, "shoal members:", err)
		if unreachable(err) {
			fmt.Fprint(stderr, membersHint(*admin))
		}
		return exitFailure
	}
	return exitOK
}

// unreachable reports whether err means no node answered at all (as
// opposed to a node that answered badly).
func unreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED)
}

// membersHint says what to check when no node answered at addr.
func membersHint(addr string) string {
	return fmt.Sprintf(`no shoal node answered on the admin address %s. Check:
  - is a node running? start one with: shoal serve
  - is -admin right? it must be the node's server.admin (default 127.0.0.1:9180),
    e.g. shoal members -admin 127.0.0.1:9180
  - is the node's admin listener on? server.admin = "" (or -admin "") turns it off
`, addr)
}
