package h2

import "time"

// What a client may send of frames that cost the server work and give
// the client nothing it could not have asked for more cheaply: past the
// rate, once the burst is spent, the connection is closed with
// GOAWAY(ENHANCE_YOUR_CALM). The bursts leave room for a browser that
// cancels a whole page's requests at once.
const (
	resetBurst, resetRate       = 400, 100 // streams reset by the client or refused, per second
	pingBurst, pingRate         = 50, 10
	settingsBurst, settingsRate = 50, 10
)

// bucket is a token bucket made by newBucket. Only the read loop uses it.
type bucket struct {
	tokens, burst, rate float64
	last                time.Time
}

func newBucket(burst, rate float64) bucket { return bucket{tokens: burst, burst: burst, rate: rate} }

// take spends a token; false when none is left.
func (b *bucket) take(now time.Time) bool {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
