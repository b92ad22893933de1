package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// KeepLease renews lease with one-off keepalives every ttl/4 until ctx
// ends or etcd says the lease is gone, each with a short deadline and
// tried again, up to three times, when it fails. It backs up
// concurrency.Session's keepalive stream, which stays on one connection:
// when that member hangs (a disk stall, a VM pause), the stream waits for
// gRPC's keepalive to drop the connection, about 7s, longer than a 5s
// lease lasts once an etcd leader change has renewed it. Each one-off
// keepalive opens a stream of its own, which the client's balancer sends
// to the next member, so a member that answers renews the lease.
func (q *Queue) KeepLease(ctx context.Context, lease clientv3.LeaseID, ttl time.Duration) {
	every := max(ttl/4, 500*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for try := range 3 {
			cctx, cancel := context.WithTimeout(ctx, min(every, time.Second))
			resp, err := q.cli.KeepAliveOnce(cctx, lease)
			cancel()
			if err != nil && ctx.Err() == nil {
				ev, msg := q.log.Debug(), "a lease renewal failed: trying again, likely through another member"
				if try == 2 {
					ev, msg = q.log.Warn(), "could not renew the lease: 3 tries in a row failed"
				}
				ev.Err(err).Int("try", try+1).Str("lease", fmt.Sprintf("%x", lease)).Msg(msg)
			} else if err == nil && try > 0 {
				q.log.Debug().Int("try", try+1).Str("lease", fmt.Sprintf("%x", lease)).Uint64("member", resp.MemberId).Msg("renewed the lease through another member")
			}
			if err == nil || ctx.Err() != nil {
				break
			}
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return
			}
		}
	}
}
