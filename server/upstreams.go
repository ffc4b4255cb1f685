package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"shoal/handlers/upstream"
	"shoal/server/config"
)

// upstreamSet is the node's running [[upstream]]s, built from one config
// and closed when a reload replaces it (requests under way finish).
type upstreamSet struct {
	list   []*upstream.Upstream // in config order, for /api/upstreams
	byName map[string]*upstream.Upstream
}

// upstreamHooks are the cluster's ways in: told when this node finds a
// target down or, by its check, up again, and asked whether this node
// checks a target. Nil fields: no cluster.
type upstreamHooks struct {
	onMarkDown func(upstreamName, target string, until time.Time)
	onMarkUp   func(upstreamName, target string)
	prober     func(upstreamName, target string) bool
}

// buildUpstreams starts every upstream of cfgs (their health checks too);
// one that replaces an upstream of prev of the same name keeps what prev
// knew of their common targets, so a reload forgets no dead target.
func buildUpstreams(cfgs []config.Upstream, prev *upstreamSet, nodeName string, log *slog.Logger, hooks upstreamHooks) (*upstreamSet, error) {
	s := &upstreamSet{byName: map[string]*upstream.Upstream{}}
	for _, c := range cfgs {
		o := upstream.Options{
			Name: c.Name, Targets: c.Targets, Policy: c.Policy, Health: c.Health,
			HealthInterval: c.HealthInterval, FailTimeout: c.FailTimeout, ConnectTimeout: c.ConnectTimeout,
			Timeout: c.Timeout, Retries: c.Retries, StripPrefix: c.StripPrefix, Headers: c.Headers,
			Root: c.Root, Index: c.Index, Split: c.Split, Env: c.Env, NodeName: nodeName, Logger: log,
		}
		if hooks.onMarkDown != nil {
			name := c.Name
			o.OnMarkDown = func(target string, until time.Time) { hooks.onMarkDown(name, target, until) }
		}
		if hooks.onMarkUp != nil {
			name := c.Name
			o.OnMarkUp = func(target string) { hooks.onMarkUp(name, target) }
		}
		if hooks.prober != nil {
			name := c.Name
			o.Prober = func(target string) bool { return hooks.prober(name, target) }
		}
		o.Previous, _ = prev.lookup(c.Name)
		u, err := upstream.New(o)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("upstream %s: %w", c.Name, err)
		}
		s.list = append(s.list, u)
		s.byName[c.Name] = u
	}
	return s, nil
}

// forSite returns each upstream's handler for one site, by name, so that
// a route's upstream action is `st.upstreams[name].ServeHTTP(w, r)` and
// the site's error pages answer 502/504.
func (s *upstreamSet) forSite(site upstream.Site) map[string]http.Handler {
	if s == nil {
		return nil
	}
	m := make(map[string]http.Handler, len(s.list))
	for name, u := range s.byName {
		m[name] = u.Handler(site)
	}
	return m
}

// snapshot is /api/upstreams' list; never nil, so it encodes as [].
func (s *upstreamSet) snapshot() []upstream.Status {
	out := []upstream.Status{}
	if s == nil {
		return out
	}
	for _, u := range s.list {
		out = append(out, u.Snapshot())
	}
	return out
}

// markDown applies another node's finding that a target is down.
func (s *upstreamSet) markDown(name, target string, until time.Time) bool {
	if u, ok := s.lookup(name); ok {
		return u.MarkDown(target, until)
	}
	return false
}

// markUp applies another node's check that found a target healthy.
func (s *upstreamSet) markUp(name, target string) bool {
	if u, ok := s.lookup(name); ok {
		return u.MarkUp(target)
	}
	return false
}

// setRemoteInflight records what other nodes have in flight to a target.
func (s *upstreamSet) setRemoteInflight(name, target string, n int64) bool {
	if u, ok := s.lookup(name); ok {
		return u.SetRemoteInflight(target, n)
	}
	return false
}

func (s *upstreamSet) lookup(name string) (*upstream.Upstream, bool) {
	if s == nil {
		return nil, false
	}
	u, ok := s.byName[name]
	return u, ok
}

// close stops every upstream's checks and idle connections.
func (s *upstreamSet) close() {
	if s == nil {
		return
	}
	for _, u := range s.list {
		u.Close()
	}
}

// upstreamSet is the runtime's upstreams; nil for no runtime.
func (rt *runtime) upstreamSet() *upstreamSet {
	if rt == nil {
		return nil
	}
	return rt.upstreams
}
