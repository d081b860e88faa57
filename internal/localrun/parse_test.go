package localrun

import (
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestEmulatorLog(t *testing.T) {
	l := newEmulatorLog()
	for _, line := range []string{
		`not json at all`,
		`{"time":"2026-11-25T10:00:00Z","level":"INFO","msg":"listening","baseUrl":"http://127.0.0.1:4321/v2"}`,
		`{"level":"INFO","msg":"request","method":"POST","path":"/v2/auth/ksef-token","status":202,"durationMs":3}`,
		`{"level":"INFO","msg":"request","method":"POST","path":"/v2/auth/ksef-token","status":400}`,
		`{"level":"INFO","msg":"request","method":"POST","path":"/v2/auth/xades-signature","status":202}`,
		`{"level":"INFO","msg":"request","method":"POST","path":"/v2/sessions/online","statusCode":201}`,
		`{"level":"INFO","msg":"request","method":"GET","path":"/v2/auth/20251010-AU-1?x=1","status":200}`,
		`{"level":"INFO","msg":"request","method":"POST","path":"/admin/reset","status":204}`,
	} {
		l.line(line)
	}
	select {
	case u := <-l.ready:
		if u != "http://127.0.0.1:4321/v2" {
			t.Errorf("announced base URL %q, want http://127.0.0.1:4321/v2", u)
		}
	default:
		t.Error("the base URL line was not recognised")
	}
	want := map[string]int{
		"POST /auth/ksef-token":      2,
		"POST /auth/xades-signature": 1,
		"POST /sessions/online":      1,
		"GET /auth/20251010-AU-1":    1,
		"POST /admin/reset":          1,
	}
	got := l.snapshot()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("requests[%q] = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("requests %v, want %v", got, want)
	}
}

func TestAWSOperation(t *testing.T) {
	tests := []struct {
		method, path, target, want string
	}{
		{"POST", "/", "secretsmanager.PutSecretValue", "SecretsManager.PutSecretValue"},
		{"POST", "/", "secretsmanager.CreateSecret", "SecretsManager.CreateSecret"},
		{"GET", "/bucket/inbox/a.xml", "", "S3.GET object"},
		{"PUT", "/bucket/results/inbox/a.xml.upo.xml", "", "S3.PUT object"},
		{"PUT", "/bucket", "", "S3.PUT bucket"},
		{"POST", "/", "DynamoDB_20120810.TransactWriteItems", "DynamoDB.TransactWriteItems"},
		{"POST", "/", "AWSEvents.PutEvents", "EventBridge.PutEvents"},
		{"POST", "/", "AWSStepFunctions.StartExecution", "StepFunctions.StartExecution"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.path, nil)
		if tt.target != "" {
			r.Header.Set("X-Amz-Target", tt.target)
		}
		if got := awsOperation(r); got != tt.want {
			t.Errorf("awsOperation(%s %s, target %q) = %q, want %q", tt.method, tt.path, tt.target, got, tt.want)
		}
	}
}

func TestResultFailure(t *testing.T) {
	tests := []struct {
		name      string
		exec      Execution
		errorJSON string
		want      Failure
	}{
		{
			name:      "report with KSeF status",
			exec:      Execution{Status: StatusFailed, Error: "RejectedError", Cause: `{"errorMessage":"{\"message\":\"x\"}","errorType":"RejectedError"}`},
			errorJSON: `{"error":"RejectedError","reason":{"stage":"poll","message":"Błąd weryfikacji semantyki dokumentu faktury","code":450,"details":["P_1 in the future"]}}`,
			want:      Failure{Error: "RejectedError", Code: 450, Message: "Błąd weryfikacji semantyki dokumentu faktury", Details: []string{"P_1 in the future"}},
		},
		{
			name: "no report: reason from the cause payload",
			exec: Execution{Status: StatusFailed, Error: "BadInputError", Cause: `{"errorMessage":"{\"stage\":\"send\",\"message\":\"seller NIP differs\",\"code\":410}","errorType":"BadInputError"}`},
			want: Failure{Error: "BadInputError", Code: 410, Message: "seller NIP differs"},
		},
		{
			name:      "report holding the raw cause",
			exec:      Execution{Status: StatusFailed, Error: "AuthFailedError"},
			errorJSON: `{"error":{"Error":"AuthFailedError","Cause":"x"},"reason":{"message":"{\"errorMessage\":\"{\\\"stage\\\":\\\"challenge\\\",\\\"message\\\":\\\"login failed\\\",\\\"code\\\":9101,\\\"details\\\":[\\\"not XML\\\"]}\",\"errorType\":\"AuthFailedError\"}"}}`,
			want:      Failure{Error: "AuthFailedError", Code: 9101, Message: "login failed", Details: []string{"not XML"}},
		},
		{
			name: "plain cause",
			exec: Execution{Status: StatusFailed, Error: "States.Runtime", Cause: "The SecondsPath parameter does not reference a valid path"},
			want: Failure{Error: "States.Runtime", Message: "The SecondsPath parameter does not reference a valid path"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Result{Execution: &tt.exec}
			if tt.errorJSON != "" {
				r.ErrorJSON = []byte(tt.errorJSON)
			}
			got := r.Failure()
			if got == nil || got.Error != tt.want.Error || got.Code != tt.want.Code || got.Message != tt.want.Message || !slices.Equal(got.Details, tt.want.Details) {
				t.Errorf("Failure() = %+v, want %+v", got, tt.want)
			}
		})
	}
	ok := &Result{Execution: &Execution{Status: StatusSucceeded}}
	if f := ok.Failure(); f != nil {
		t.Errorf("Failure() of an accepted invoice = %+v, want nil", f)
	}
}

func TestResultKSeFNumber(t *testing.T) {
	r := &Result{
		Execution:  &Execution{Status: StatusSucceeded, Output: []byte(`{"run":{"poll":{"ksefNumber":"from-output"}}}`)},
		ResultJSON: []byte(`{"invoice":{"key":"inbox/a.xml"},"ksefNumber":"9999999999-20261125-0100001AF629-AF"}`),
	}
	if got := r.KSeFNumber(); got != "9999999999-20261125-0100001AF629-AF" {
		t.Errorf("KSeFNumber() = %q, want the stored result's", got)
	}
	r.ResultJSON = nil
	if got := r.KSeFNumber(); got != "from-output" {
		t.Errorf("KSeFNumber() without a stored result = %q, want the execution output's", got)
	}
}

func TestNewKSeFToken(t *testing.T) {
	re := regexp.MustCompile(`^\d{8}-EC-[0-9A-F]{10}-[0-9A-F]{10}-[0-9A-F]{2}\|nip-9999999999\|[0-9a-f]{64}$`)
	a, err := newKSeFToken("9999999999")
	if err != nil {
		t.Fatal(err)
	}
	b, err := newKSeFToken("9999999999")
	if err != nil {
		t.Fatal(err)
	}
	if !re.MatchString(a) {
		t.Errorf("token of %d chars does not have the KSeF token shape", len(a))
	}
	if a == b {
		t.Error("two tokens are equal")
	}
}

func TestArnSubstitution(t *testing.T) {
	for in, want := range map[string]string{"challenge": "ChallengeFunctionArn", "send": "SendFunctionArn", "poll": "PollFunctionArn"} {
		if got := arnSubstitution(in); got != want {
			t.Errorf("arnSubstitution(%q) = %q, want %q", in, got, want)
		}
	}
	if got := FunctionARN("send"); !strings.HasSuffix(got, ":function:send") || !strings.HasPrefix(got, "arn:aws:lambda:eu-central-1:123456789012:") {
		t.Errorf("FunctionARN(send) = %q", got)
	}
}
