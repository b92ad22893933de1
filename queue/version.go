package queue

import (
	"encoding/json"
	"fmt"
)

// SchemaVersion is the version of the task, group and result records this
// build writes. A record with a higher version was written by a newer
// Patrol: it does not decode here, and is quarantined like a malformed one
// rather than misread.
const SchemaVersion = 1

func checkVersion(v int) error {
	if v > SchemaVersion {
		return fmt.Errorf("record version %d is newer than this Patrol's %d: upgrade it", v, SchemaVersion)
	}
	return nil
}

// The plain types have the records' fields without their JSON methods.
type (
	plainTask    Task
	plainRunning Running
	plainResult  Result
)

// MarshalJSON writes the task with its schema version.
func (t Task) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		V int `json:"v"`
		plainTask
	}{SchemaVersion, plainTask(t)})
}

// UnmarshalJSON reads a task, refusing a newer schema version.
func (t *Task) UnmarshalJSON(b []byte) error {
	w := struct {
		V int `json:"v"`
		*plainTask
	}{plainTask: (*plainTask)(t)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	return checkVersion(w.V)
}

// MarshalJSON writes the group record with its schema version.
func (r Running) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		V int `json:"v"`
		plainRunning
	}{SchemaVersion, plainRunning(r)})
}

// UnmarshalJSON reads a group record, refusing a newer schema version.
func (r *Running) UnmarshalJSON(b []byte) error {
	w := struct {
		V int `json:"v"`
		*plainRunning
	}{plainRunning: (*plainRunning)(r)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	return checkVersion(w.V)
}

// MarshalJSON writes the result with its schema version.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		V int `json:"v"`
		plainResult
	}{SchemaVersion, plainResult(r)})
}

// UnmarshalJSON reads a result, refusing a newer schema version.
func (r *Result) UnmarshalJSON(b []byte) error {
	w := struct {
		V int `json:"v"`
		*plainResult
	}{plainResult: (*plainResult)(r)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	return checkVersion(w.V)
}

// MarshalJSON writes a results row: the result's fields and the task ID,
// without the storage schema version.
func (h HostResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		plainResult
		Task string `json:"task"`
	}{plainResult(h.Result), h.Task})
}

// UnmarshalJSON reads a results row.
func (h *HostResult) UnmarshalJSON(b []byte) error {
	w := struct {
		*plainResult
		Task *string `json:"task"`
	}{(*plainResult)(&h.Result), &h.Task}
	return json.Unmarshal(b, &w)
}
