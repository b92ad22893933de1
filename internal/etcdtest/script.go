package etcdtest

import (
	"context"
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// This file serves harnesses that drive tests themselves, such as
// testscript: they call Run on the testing.M they are given, and their
// script commands cannot fail a testing.TB.

// M is what testscript.Main and the like take in place of a *testing.M.
type M interface{ Run() int }

// Wrap returns m with a Run that does what Main does — start the shared
// member, run the tests, stop the member, check for leaked goroutines — and
// returns the exit code instead of exiting, so that the caller's own
// cleanup runs.
//
// A harness that re-executes the test binary as a command (testscript.Main
// does) never calls Run in the child, so the child starts no member.
func Wrap(m *testing.M) M { return wrapped{m} }

type wrapped struct{ m *testing.M }

func (w wrapped) Run() int { return run(w.m) }

// NewPrefix returns a key prefix no other test uses, built from name, for
// callers with no testing.TB at hand (a script's setup). It is written as
// Env.Prefix is: no trailing slash.
func NewPrefix(name string) string {
	return fmt.Sprintf("/test/%s-%d", unsafeChars.ReplaceAllString(name, "_"), seq.Add(1))
}

// Wait blocks until cond holds for the keys under prefix, re-evaluating it on
// every change (a watch, not a poll), and returns the listing cond accepted.
// It is WaitFor for callers that report errors rather than fail a test:
// it returns ctx's error if cond does not hold before ctx ends.
func Wait(ctx context.Context, cli *clientv3.Client, prefix string, cond func(*clientv3.GetResponse) bool) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the watch
	wch := cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-wch // the watch is in place: no change between it and the first read is missed
	for {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
		if err != nil {
			return nil, fmt.Errorf("etcdtest: read %s: %w", prefix, err)
		}
		if cond(resp) {
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("etcdtest: waiting on %s (%d keys now): %w", prefix, resp.Count, ctx.Err())
		case _, ok := <-wch:
			if !ok {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("etcdtest: waiting on %s (%d keys now): %w", prefix, resp.Count, ctx.Err())
				}
				return nil, fmt.Errorf("etcdtest: watch on %s closed", prefix)
			}
		}
	}
}
