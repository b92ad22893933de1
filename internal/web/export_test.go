package web

// SetBigBatch changes the batch size from which results pages are bounded
// by the follower's task list, for tests of that path; it returns a
// function that puts it back.
func SetBigBatch(n int) func() {
	old := bigBatch
	bigBatch = n
	return func() { bigBatch = old }
}
