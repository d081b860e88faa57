package contract

import (
	"fmt"
	"slices"
	"testing"
)

// TestBatchReleasesWhatItTookIn follows every path of batch.asl.json from StartSending, from
// where the run holds claims on invoices, tracking the flags that Pass states set
// ($.run.sending.started, $.run.released) to decide the Choice rules on them. A path may reach
// the Fail state with nothing released only from ReleaseClaims itself (the release failed) or
// from SessionsUnfinished (the invoices are in KSeF sessions, whose outcomes a later run
// stores); any other way leaves the claims to time out. And ReleaseClaims runs at most once, so
// that a failure after the release (the sessions' polling failing again) ends the run instead of
// looping.
func TestBatchReleasesWhatItTookIn(t *testing.T) {
	def := repoDefinition(t, "batch.asl.json")
	if _, ok := def.States["StartSending"]; !ok {
		t.Fatal("batch.asl.json has no StartSending state")
	}
	type node struct {
		name  string
		flags flags
	}
	seen := map[node]bool{}
	var walk func(n node)
	walk = func(n node) {
		if seen[n] {
			return
		}
		seen[n] = true
		st := def.States[n.name]
		after := n.flags.set(st)
		for _, next := range successors(st, n.flags) {
			nst, ok := def.States[next]
			switch {
			case !ok:
				t.Errorf("%s: transition to %q, which is not a state", n.name, next)
				continue
			case nst.Type == "Fail" && !after.released && !slices.Contains([]string{"ReleaseClaims", "SessionsUnfinished"}, n.name):
				t.Errorf("%s goes to %s without releasing the invoices the run took in (want AfterFailure)", n.name, next)
			case next == "ReleaseClaims" && after.released:
				t.Errorf("%s goes to ReleaseClaims after the release: a failure that repeats would loop", n.name)
				continue
			}
			walk(node{next, after})
		}
	}
	walk(node{name: "StartSending"})
	if !seen[node{"ReleaseClaims", flags{started: true}}] {
		t.Error("no path from StartSending reaches ReleaseClaims")
	}
}

// flags are the boolean flags of batch.asl.json's working area that decide where a failure goes.
type flags struct {
	started  bool // $.run.sending.started: invoices may have been taken in
	released bool // $.run.released: ReleaseClaims has run
}

// set returns the flags after st, a Pass state that may set one.
func (f flags) set(st *state) flags {
	if st.Type != "Pass" {
		return f
	}
	switch p, _ := st.resultPath(); p {
	case "$.run.released":
		f.released = st.Result == true
	case "$.run.sending":
		r, _ := st.Result.(map[string]any)
		f.started = r["started"] == true
	}
	return f
}

// get returns the value of a flag by its path, and whether it is one of the flags.
func (f flags) get(path string) (bool, bool) {
	switch path {
	case "$.run.sending.started":
		return f.started, true
	case "$.run.released":
		return f.released, true
	}
	return false, false
}

// successors returns the states st may go to next: Choice rules on a flag are decided, any other
// rule may or may not match.
func successors(st *state, f flags) []string {
	var out []string
	if st.Next != "" {
		out = append(out, st.Next)
	}
	for _, c := range st.Catch {
		out = append(out, c.Next)
	}
	if st.Type != "Choice" {
		return out
	}
	for _, r := range st.Choices {
		next, _ := r["Next"].(string)
		v, known := f.get(fmt.Sprint(r["Variable"]))
		want, isBool := r["BooleanEquals"].(bool)
		if !known || !isBool {
			out = append(out, next)
			continue
		}
		if v == want {
			return append(out, next) // the rules after it and Default are not reached
		}
	}
	return append(out, st.Default)
}
