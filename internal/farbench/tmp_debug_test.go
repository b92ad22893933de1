package farbench

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func BenchmarkTmpDebug(b *testing.B) {
	e := newEnv(b)
	for b.Loop() {
		s := setup{hosts: 20000, workers: 4, concurrency: 64, delay: 0 * time.Millisecond}
		f := e.runBatch(b, s)
		fmt.Fprintf(os.Stderr, "elapsed %s claims %d p50 %s p99 %s %v\nready %v\n", f.elapsed, len(f.claims), pct(f.claims, 50), pct(f.claims, 99), f.claimOutcomes, f.readyKeys)
	}
}
