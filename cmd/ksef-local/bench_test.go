package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

func TestWithNumberChangesOnlyP2(t *testing.T) {
	for name, inv := range official.SampleInvoices() {
		t.Run(name, func(t *testing.T) {
			old := p2.FindSubmatch(inv)
			if old == nil {
				t.Fatal("no P_2 in the sample")
			}
			got, err := withNumber(inv, "BENCH/1/00042")
			if err != nil {
				t.Fatal(err)
			}
			want := bytes.Replace(inv, old[0], []byte("<P_2>BENCH/1/00042</P_2>"), 1)
			if !bytes.Equal(got, want) {
				t.Errorf("withNumber changed more than the first P_2 (got %d bytes, want %d)", len(got), len(want))
			}
			if n := len(regexp.MustCompile(`<P_2>BENCH/1/00042</P_2>`).FindAll(got, -1)); n != 1 {
				t.Errorf("%d new P_2 elements, want 1", n)
			}
		})
	}
	if _, err := withNumber([]byte("<Faktura/>"), "x"); err == nil {
		t.Error("withNumber of an invoice without P_2: no error")
	}
}

func TestWithNumberKeepsPrefix(t *testing.T) {
	got, err := withNumber([]byte(`<a:Fa><a:P_1>2026-01-01</a:P_1><a:P_2>FV/1</a:P_2></a:Fa>`), "FV/2")
	if err != nil {
		t.Fatal(err)
	}
	if want := `<a:Fa><a:P_1>2026-01-01</a:P_1><a:P_2>FV/2</a:P_2></a:Fa>`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]float64{5, 1, 4, 2, 3})
	if s.Mean != 3 || s.Min != 1 || s.Max != 5 || s.P50 != 3 || s.P95 != 5 {
		t.Errorf("summarize = %+v, want mean 3, min 1, p50 3, p95 5, max 5", s)
	}
	if z := summarize(nil); z != (stats{}) {
		t.Errorf("summarize(nil) = %+v, want zero", z)
	}
}
