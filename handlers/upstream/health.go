package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// checkLoop checks every target at once every health_interval until
// Close, starting at once so a target down at start is skipped soon.
func (u *Upstream) checkLoop() {
	defer u.checker.Done()
	tick := time.NewTicker(u.opts.healthInterval())
	defer tick.Stop()
	for {
		u.checkAll()
		select {
		case <-u.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (u *Upstream) checkAll() {
	var wg sync.WaitGroup
	for _, t := range u.targets {
		wg.Go(func() { u.checkOne(t) })
	}
	wg.Wait()
}

// checkOne runs one check and records a change of verdict; a target
// another node checks is left to it.
func (u *Upstream) checkOne(t *target) {
	if u.opts.Prober != nil && !u.opts.Prober(t.Raw) {
		// This node's old verdict would outlive its checks; the prober's
		// findings (MarkDown, MarkUp) rule now. A target this node found
		// down stays skipped (downUntil) until the prober says otherwise.
		t.unhealthy.Store(false)
		return
	}
	timeout := min(u.opts.healthInterval(), u.opts.connectTimeout()+u.opts.timeout())
	var err error
	if t.fcgi != nil {
		err = t.fcgi.check(u, u.opts.Health, timeout)
	} else {
		err = t.http.check(u.ctx, u.opts.Health, timeout, u.checkAgent())
	}
	if u.ctx.Err() != nil {
		return // closed meanwhile: the verdict means nothing
	}
	if err == nil {
		// A target that answers its check takes requests at once, even
		// one skipped after a failed request: the check is the fresher news.
		skipped := t.downUntil.Swap(0) > time.Now().UnixNano()
		if t.unhealthy.Swap(false) {
			skipped = true
			u.log.Info("upstream: target healthy again", "target", t.Raw)
		}
		if skipped && u.opts.OnMarkUp != nil {
			u.opts.OnMarkUp(t.Raw)
		}
		return
	}
	if !t.unhealthy.Swap(true) {
		u.log.Warn("upstream: health check failed; target skipped", "target", t.Raw, "error", err)
	}
	until := time.Now().Add(max(u.opts.healthInterval(), u.opts.failTimeout()))
	// Skipped by the clock too, so that if this node stops being the
	// prober the target stays skipped until the new prober has checked.
	t.skipUntil(until)
	if u.opts.OnMarkDown != nil {
		u.opts.OnMarkDown(t.Raw, until)
	}
}

// checkAgent is the User-Agent of the checks; it names the node, so an
// application's log shows which node of a cluster probes it.
func (u *Upstream) checkAgent() string {
	if u.opts.NodeName == "" || strings.ContainsAny(u.opts.NodeName, "()\r\n") {
		return "shoal-health-check"
	}
	return "shoal-health-check (node " + u.opts.NodeName + ")"
}

// check sends GET path on the target's own pool: 2xx and 3xx are healthy.
func (ht *httpTarget) check(parent context.Context, path string, timeout time.Duration, agent string) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	u := *ht.base
	u.Path = path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", agent)
	resp, err := ht.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("upstream: health check answered %d", resp.StatusCode)
	}
	return nil
}
