package metrics

import "time"

// SetClock replaces the collector's clock, for tests of ages and caching.
func SetClock(c *QueueCollector, now func() time.Time) { c.now = now }

// SetCacheFor changes how long the collector reuses a reading.
func SetCacheFor(c *QueueCollector, d time.Duration) { c.cacheFor = d }
