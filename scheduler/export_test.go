package scheduler

import "context"

// SetShardHook sets the hook run before each batch is sharded, until the
// returned function restores none. Tests that set it must not run in
// parallel.
func SetShardHook(hook func(ctx context.Context, batch string)) (restore func()) {
	shardHook = hook
	return func() { shardHook = nil }
}
