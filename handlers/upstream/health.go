package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
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

// checkOne runs one check and records a change of verdict.
func (u *Upstream) checkOne(t *target) {
	timeout := min(u.opts.healthInterval(), u.opts.connectTimeout()+u.opts.timeout())
	var err error
	if t.fcgi != nil {
		err = t.fcgi.check(u, u.opts.Health, timeout)
	} else {
		err = t.http.check(u.ctx, u.opts.Health, timeout)
	}
	if u.ctx.Err() != nil {
		return // closed meanwhile: the verdict means nothing
	}
	if err == nil {
		// A target that answers its check takes requests at once, even
		// one skipped after a failed request: the check is the fresher news.
		t.downUntil.Store(0)
		if t.unhealthy.Swap(false) {
			u.log.Info("upstream: target healthy again", "target", t.Raw)
		}
		return
	}
	if !t.unhealthy.Swap(true) {
		u.log.Warn("upstream: health check failed; target skipped", "target", t.Raw, "error", err)
	}
	if u.opts.OnMarkDown != nil {
		u.opts.OnMarkDown(t.Raw, time.Now().Add(max(u.opts.healthInterval(), u.opts.failTimeout())))
	}
}

// check sends GET path on the target's own pool: 2xx and 3xx are healthy.
func (ht *httpTarget) check(parent context.Context, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	u := *ht.base
	u.Path = path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "shoal-health-check")
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
