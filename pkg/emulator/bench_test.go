package emulator_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

// BenchmarkSendInvoice measures POST /sessions/online/{ref}/invoices end to end over HTTP:
// Base64, size and hash checks, AES decryption, XML form checks, FA(3) XSD validation, duplicate
// detection, KSeF number; "specValidated" adds the OpenAPI request and response validation that
// emutest servers run.
func BenchmarkSendInvoice(b *testing.B) {
	b.Run("emulator", func(b *testing.B) {
		clock := emutest.NewFakeClock(testStart)
		e, err := emulator.New(benchConfig(), emulator.WithClock(clock))
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(e.Handler())
		b.Cleanup(hs.Close)
		benchSend(b, &emutest.Server{URL: hs.URL + "/v2", Emulator: e, Clock: clock, HTTP: hs})
	})
	b.Run("specValidated", func(b *testing.B) {
		benchSend(b, emutest.NewServerAt(b, testStart, benchConfig()))
	})
}

func benchConfig() emulator.Config {
	return emulator.Config{Tokens: map[string][]string{sellerNIP: {token1}}, MaxInvoicesPerSession: 1 << 30}
}

func benchSend(b *testing.B, srv *emutest.Server) {
	c := newClient(b, srv)
	access := c.loginToken(sellerNIP, token1).AccessToken.Token
	s := c.openSession(access)
	bodies := make([][]byte, b.N)
	for i := range bodies {
		body, err := json.Marshal(sendRequest(b, s, sample1("BENCH/"+strconv.Itoa(i))))
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = body
	}
	url := srv.URL + "/sessions/online/" + s.ref + "/invoices"
	hc := srv.Client()
	b.SetBytes(int64(len(sample1("BENCH/0"))))
	b.ResetTimer()
	for i := range b.N {
		req, _ := http.NewRequestWithContext(b.Context(), "POST", url, bytes.NewReader(bodies[i]))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("HTTP %d", resp.StatusCode)
		}
	}
}
