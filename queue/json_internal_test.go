package queue

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/patrol-dev/patrol/internal/inventory"
)

// mustJSON and decode call the versioned records' JSON methods directly:
// they must write and read exactly what encoding/json does through them.
func TestRecordJSONMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 25, 13, 3, 6, 123456789, time.UTC)
	task := Task{Batch: "b1", ID: "web<1>", Zone: "z", Shard: 3, Host: inventory.Host{Name: "web&1", Address: "10.0.0.1", Vars: map[string]string{"zone": "z", "k": "\u2028"}},
		Round: 1, Attempt: 2, NotBefore: at, History: []Attempt{{Attempt: 1, Status: StatusError, Message: "a \"quoted\" <b>", FinishedAt: at, Details: map[string]string{"exit": "1"}}}}
	res := Result{Host: "web&1", Status: StatusOK, Attempts: 2, Message: "ok <fine>", DurationMS: 7, Worker: "w", FinishedAt: at, Round: 1,
		History: task.History, Details: map[string]string{"output": "line\nline"}}
	run := Running{Worker: "w", ClaimedAt: at, Deadline: at.Add(time.Minute), Tasks: []Task{task, {Batch: "b1", ID: "h2", Attempt: 1}}}
	for _, v := range []any{task, &task, res, &res, run, &run, Task{}, Result{}, Running{}, (*Task)(nil), (*Result)(nil), Claim{Worker: "w"}} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := mustJSON(v); got != string(want) {
			t.Errorf("mustJSON(%T):\n got %s\nwant %s", v, got, want)
		}
	}

	taskJSON, resJSON, runJSON := mustJSON(task), mustJSON(res), mustJSON(run)
	inputs := []string{taskJSON, resJSON, runJSON, " \n" + taskJSON + "\t", `null`, `{}`, `{"v":1}`, `{"v":2,"id":"x"}`, `{"v":9}`,
		`{"v":"1"}`, `{"attempt":"x","status":7}`, `{"tasks":[{"v":5}]}`, `{"tasks":{}}`, `[]`, `"s"`, `3`, ``, `{`, `{"id":"x"}}`, `{"id":"x"} x`,
		`{"host":{"name":1}}`, `{"history":[{"attempt":"1"}]}`, `{"not_before":"yesterday"}`, `{"finished_at":"2026-11-25T13:03:06Z"}`}
	for _, in := range inputs {
		for _, mk := range []func() (any, any){
			func() (any, any) { return new(Task), new(Task) },
			func() (any, any) { return new(Result), new(Result) },
			func() (any, any) { return new(Running), new(Running) },
		} {
			got, want := mk()
			werr := json.Unmarshal([]byte(in), want)
			gerr := decode("k", []byte(in), got)
			if (gerr == nil) != (werr == nil) {
				t.Errorf("decode(%T, %q): err %v, json.Unmarshal err %v", got, in, gerr, werr)
				continue
			}
			if werr != nil && gerr.Error() != fmt.Sprintf("%v at k: %v", ErrBadValue, werr) {
				t.Errorf("decode(%T, %q): err %q, json.Unmarshal err %q", got, in, gerr, werr)
			}
			if g, w := fmt.Sprintf("%#v", got), fmt.Sprintf("%#v", want); g != w {
				t.Errorf("decode(%T, %q):\n got %s\nwant %s", got, in, g, w)
			}
		}
	}
}
