package metrics

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patrol-dev/patrol/queue"
)

// QueueCollector reads the queue's depth from etcd when scraped, and
// etcd's own size and quota. A reading is reused for CacheFor, so that
// several scrapers (or a scraper and `patrol dev` tests) cost one reading.
type QueueCollector struct {
	q        *queue.Queue
	cacheFor time.Duration
	timeout  time.Duration
	now      func() time.Time

	up, tasks, oldest, leases, unserved, active, dbSize, dbInUse, dbQuota *prometheus.Desc

	mu      sync.Mutex
	readAt  time.Time
	ok      bool
	depth   queue.Depth
	db      dbStatus
	specs   map[string]queue.BatchSpec
	clock   revClock
	reading bool
}

type dbStatus struct{ size, inUse, quota int64 }

// CacheFor is how long a reading is reused.
const CacheFor = 5 * time.Second

// NewQueueCollector returns a collector over q; register it on the
// scheduler's registry.
func NewQueueCollector(q *queue.Queue) *QueueCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "queue", name), help, labels, nil)
	}
	etcdDesc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "etcd", name), help, nil, nil)
	}
	return &QueueCollector{
		q: q, cacheFor: CacheFor, timeout: 4 * time.Second, now: time.Now, specs: map[string]queue.BatchSpec{},
		up:       desc("up", "1 when the last reading of the queue from etcd succeeded, 0 when it failed (the other queue metrics then keep their last values)."),
		tasks:    desc("tasks", "Tasks waiting or running, by state (pending, retrying, held, running) and zone.", "state", "zone"),
		oldest:   desc("oldest_pending_age_seconds", "Age of the zone's oldest claimable task, since it became claimable (a lower bound, to within a scrape interval).", "zone"),
		leases:   desc("worker_leases", "Live worker leases (registered workers), by zone.", "zone"),
		unserved: desc("zone_unserved", "1 when the zone has pending tasks and no live worker, else 0.", "zone"),
		active:   desc("active_batches", "Batches not yet finished."),
		dbSize:   etcdDesc("db_size_bytes", "etcd's backend database size (largest member)."),
		dbInUse:  etcdDesc("db_size_in_use_bytes", "Of etcd's backend size, the part in use; defragmentation frees the rest."),
		dbQuota:  etcdDesc("db_quota_bytes", "etcd's backend quota: writes fail with 'database space exceeded' beyond it."),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.tasks, c.oldest, c.leases, c.unserved, c.active, c.dbSize, c.dbInUse, c.dbQuota} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	c.refresh()
	c.mu.Lock()
	defer c.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.up, b2f(c.ok))
	if c.readAt.IsZero() || c.depth.Zones == nil {
		return // never read: nothing to report but up
	}
	now := c.now()
	for _, zone := range sortedZones(c.depth.Zones) {
		z := c.depth.Zones[zone]
		gauge(c.tasks, float64(z.Pending), "pending", zone)
		gauge(c.tasks, float64(z.Retrying), "retrying", zone)
		gauge(c.tasks, float64(z.Held), "held", zone)
		gauge(c.tasks, float64(z.Running), "running", zone)
		age := 0.0
		if z.OldestPendingRev != 0 {
			age = now.Sub(c.clock.at(z.OldestPendingRev)).Seconds()
		}
		gauge(c.oldest, age, zone)
		gauge(c.leases, float64(z.Workers), zone)
		gauge(c.unserved, b2f(z.Pending > 0 && z.Workers == 0), zone)
	}
	gauge(c.active, float64(c.depth.ActiveBatches))
	if c.db.size > 0 {
		gauge(c.dbSize, float64(c.db.size))
		gauge(c.dbInUse, float64(c.db.inUse))
	}
	if c.db.quota > 0 {
		gauge(c.dbQuota, float64(c.db.quota))
	}
}

// refresh reads etcd unless the last reading is fresh enough. A scrape
// that arrives while another reads gets the last reading (before the
// first one, only up, at 0).
func (c *QueueCollector) refresh() {
	c.mu.Lock()
	if c.reading || (!c.readAt.IsZero() && c.now().Sub(c.readAt) < c.cacheFor) {
		c.mu.Unlock()
		return
	}
	c.reading = true
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	d, err := c.q.Depth(ctx, c.spec)
	var db dbStatus
	if err == nil {
		db = c.dbStatus(ctx)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.reading = false
	c.readAt = c.now() // d.Revision was current before now: dating it now keeps ages lower bounds
	c.ok = err == nil
	if err != nil {
		return
	}
	c.depth, c.db = d, db
	var need int64 // the oldest revision an age is wanted for
	for _, z := range d.Zones {
		if z.OldestPendingRev != 0 && (need == 0 || z.OldestPendingRev < need) {
			need = z.OldestPendingRev
		}
	}
	c.clock.add(d.Revision, c.readAt, need)
}

// spec returns a batch's spec, cached: specs never change.
func (c *QueueCollector) spec(ctx context.Context, batch string) (queue.BatchSpec, error) {
	c.mu.Lock()
	s, ok := c.specs[batch]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := c.q.LoadBatch(ctx, batch)
	if err != nil {
		return s, err
	}
	c.mu.Lock()
	if len(c.specs) > 10000 {
		clear(c.specs)
	}
	c.specs[batch] = s
	c.mu.Unlock()
	return s, nil
}

// dbStatus asks every endpoint for its backend size and quota, keeping the
// largest: the member nearest its quota is the one that matters. An
// endpoint that does not answer is skipped.
func (c *QueueCollector) dbStatus(ctx context.Context) dbStatus {
	var db dbStatus
	cli := c.q.Client()
	for _, ep := range cli.Endpoints() {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			continue
		}
		db.size = max(db.size, st.DbSize)
		db.inUse = max(db.inUse, st.DbSizeInUse)
		db.quota = max(db.quota, st.DbSizeQuota)
	}
	return db
}

// revClock maps etcd revisions to the time they were first seen current,
// which is how a key's mod revision becomes an age without a timestamp in
// its value.
type revClock struct {
	samples []revAt // increasing revision
}

type revAt struct {
	rev int64
	at  time.Time
}

// maxSamples bounds the clock: at one reading per 15s scrape, about four
// days. Ages older than that read as lower bounds.
const maxSamples = 25000

// add records that rev was current at t, and forgets samples no longer
// needed to date revisions at or after need (0: none needed).
func (rc *revClock) add(rev int64, t time.Time, need int64) {
	if n := len(rc.samples); n == 0 || rev > rc.samples[n-1].rev {
		rc.samples = append(rc.samples, revAt{rev, t})
	}
	keep := len(rc.samples) - 1 // the latest always stays
	if need != 0 {
		// The sample dating need is the first one at or after it.
		keep = sort.Search(len(rc.samples), func(i int) bool { return rc.samples[i].rev >= need })
	}
	keep = min(keep, len(rc.samples)-1)
	keep = max(keep, len(rc.samples)-maxSamples)
	rc.samples = rc.samples[keep:]
}

// at returns the earliest time rev was known to be written by: the time of
// the first sample at or after it.
func (rc *revClock) at(rev int64) time.Time {
	i := sort.Search(len(rc.samples), func(i int) bool { return rc.samples[i].rev >= rev })
	if i == len(rc.samples) {
		i = len(rc.samples) - 1
	}
	return rc.samples[i].at
}

func sortedZones(m map[string]*queue.ZoneDepth) []string {
	out := make([]string, 0, len(m))
	for z := range m {
		out = append(out, z)
	}
	sort.Strings(out)
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
