package queue

import (
	"context"
	"fmt"
	"time"
)

// CheckFits refuses a batch that etcd cannot take: while its NOSPACE alarm
// is raised, or when the batch (as planned) needs more than the quota
// leaves. It writes nothing. When etcd's space cannot be read it returns
// nil: etcd itself then refuses what does not fit. The CLI's submit and
// the web API's both ask it before writing.
func (q *Queue) CheckFits(ctx context.Context, plan Plan) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sp, err := q.Space(ctx)
	if err != nil {
		return nil
	}
	if sp.NoSpace {
		return fmt.Errorf("etcd is out of space (NOSPACE alarm: database %s of a %s quota) and takes no new batch; "+
			"free space with `patrol delete BATCH` (old batches) or `patrol cancel BATCH`, then `patrol space --reclaim`; nothing was written",
			BytesText(sp.Size), QuotaText(sp))
	}
	if sp.Quota > 0 && int64(plan.PeakBytes) > sp.Free() {
		return fmt.Errorf("batch does not fit in etcd: it needs about %s while it runs, and etcd has %s free (database %s of a %s quota); "+
			"submit fewer hosts (--limit), delete old batches (`patrol delete BATCH`) and `patrol space --reclaim`, "+
			"or raise etcd's --quota-backend-bytes; nothing was written",
			BytesText(int64(plan.PeakBytes)), BytesText(sp.Free()), BytesText(sp.Size), QuotaText(sp))
	}
	return nil
}

// QuotaText is etcd's quota for a message: its size, or "unreported".
func QuotaText(sp Space) string {
	if sp.Quota == 0 {
		return "unreported"
	}
	return BytesText(sp.Quota)
}

// BytesText writes a byte count as people read it: 1.5 MiB, 300 B.
func BytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
