package ksef_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// TestIntegrationKSeFTest sends an official sample invoice to the real KSeF TEST environment
// (https://api-test.ksef.mf.gov.pl/v2) and downloads its UPO. It is opt-in: it runs only when
// KSEF_INTEGRATION=test is set, and it needs the internet. It logs in with a self-signed company
// seal for a random NIP (TEST accepts those; its data is shared by all integrators, so random
// NIPs keep runs apart), which checks our XAdES signature against KSeF itself, or with a KSeF
// token when KSEF_TEST_NIP and KSEF_TEST_TOKEN are set. Statuses are polled in real time, with
// context-aware waits.
func TestIntegrationKSeFTest(t *testing.T) {
	if os.Getenv("KSEF_INTEGRATION") != "test" {
		t.Skip("opt-in: set KSEF_INTEGRATION=test (and optionally KSEF_TEST_NIP, KSEF_TEST_TOKEN) to run against KSeF TEST")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	auth, err := ksef.NewClient(ksef.WithEnvironment(ksef.Test), ksef.WithProblemDetails(true))
	if err != nil {
		t.Fatal(err)
	}
	nip, token := os.Getenv("KSEF_TEST_NIP"), os.Getenv("KSEF_TEST_TOKEN")
	var init *ksef.AuthInit
	if nip != "" && token != "" {
		ch, err := auth.Challenge(ctx)
		if err != nil {
			t.Fatalf("challenge: %v", err)
		}
		init, err = auth.AuthenticateWithKSeFToken(ctx, ksef.KSeFTokenAuth{Challenge: ch, Context: ksef.NipContext(nip), Token: ksef.Secret(token)})
		if err != nil {
			t.Fatalf("KSeF-token login: %v", err)
		}
	} else {
		nip = randomNIP(t)
		cert, key, err := ksef.NewTestCertificate(ksef.TestCertificateOptions{NIP: nip, Seal: true})
		if err != nil {
			t.Fatal(err)
		}
		init, err = auth.AuthenticateWithCertificate(ctx, ksef.NipContext(nip), key, cert)
		if err != nil {
			t.Fatalf("XAdES login: %v", err)
		}
	}
	t.Logf("NIP %s, authentication %s", nip, init.ReferenceNumber)
	for {
		st, err := auth.AuthStatus(ctx, init.ReferenceNumber, init.AuthenticationToken.Token)
		if err != nil {
			t.Fatalf("auth status: %v", err)
		}
		if st.Status.Code == 200 {
			break
		}
		if st.Status.Code >= 400 {
			t.Fatalf("authentication failed: %d %s %v", st.Status.Code, st.Status.Description, st.Status.Details)
		}
		wait(ctx, t, time.Second)
	}
	tokens, err := auth.RedeemTokens(ctx, init.AuthenticationToken.Token)
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	defer func() {
		if err := auth.RevokeCurrentSession(context.WithoutCancel(ctx), tokens.RefreshToken.Token); err != nil {
			t.Logf("logout: %v", err)
		}
	}()

	c, err := ksef.NewClient(ksef.WithEnvironment(ksef.Test), ksef.WithProblemDetails(true),
		ksef.WithAccessToken(ksef.StaticAccessToken(tokens.AccessToken.Token)))
	if err != nil {
		t.Fatal(err)
	}
	invoice := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	invoice = bytes.ReplaceAll(invoice, []byte("<NIP>9999999999</NIP>"), []byte("<NIP>"+nip+"</NIP>"))
	invoice = bytes.Replace(invoice, []byte("<P_2>FV2026/02/150</P_2>"), []byte(fmt.Sprintf("<P_2>KSEF-IT/%d</P_2>", time.Now().UnixNano())), 1)
	if _, err := ksef.InspectInvoice(invoice, ksef.InspectOptions{ContextNIP: nip}); err != nil {
		t.Fatalf("inspection: %v", err)
	}
	session, err := c.OpenOnlineSession(ctx, ksef.FormCodeFA3())
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	defer func() {
		if err := c.CloseOnlineSession(context.WithoutCancel(ctx), session.ReferenceNumber); err != nil {
			t.Logf("close session: %v", err)
		}
	}()
	sent, err := c.SendInvoice(ctx, session, invoice, nil)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	for {
		st, err := c.InvoiceStatus(ctx, session.ReferenceNumber, sent.ReferenceNumber)
		if err != nil {
			t.Fatalf("invoice status: %v", err)
		}
		if st.Status.Code == 200 {
			if _, err := ksef.ParseKSeFNumber(st.KSeFNumber); err != nil {
				t.Errorf("KSeF number %q: %v", st.KSeFNumber, err)
			}
			upo, err := c.InvoiceUPOByKSeFNumber(ctx, session.ReferenceNumber, st.KSeFNumber)
			if err != nil {
				t.Fatalf("UPO: %v", err)
			}
			if !bytes.Contains(upo.Content, []byte(st.KSeFNumber)) {
				t.Errorf("the UPO does not name KSeF number %s", st.KSeFNumber)
			}
			t.Logf("accepted: KSeF number %s, UPO %d bytes", st.KSeFNumber, len(upo.Content))
			return
		}
		if st.Status.Code >= 400 {
			t.Fatalf("invoice rejected: %d %s %v", st.Status.Code, st.Status.Description, st.Status.Details)
		}
		wait(ctx, t, 2*time.Second)
	}
}

// randomNIP returns a random NIP with a valid check digit (TEST only verifies the format).
func randomNIP(t *testing.T) string {
	t.Helper()
	for {
		n, err := rand.Int(rand.Reader, big.NewInt(900_000_000))
		if err != nil {
			t.Fatal(err)
		}
		nip := fmt.Sprintf("%09d", n.Int64()+100_000_000)
		for d := 0; d <= 9; d++ {
			if candidate := nip + fmt.Sprint(d); ksef.ValidNIP(candidate) && ksef.NIPChecksumValid(candidate) {
				return candidate
			}
		}
	}
}

// wait waits d or until ctx ends (the test then fails).
func wait(ctx context.Context, t *testing.T, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		t.Fatalf("gave up: %v", ctx.Err())
	case <-timer.C:
	}
}
