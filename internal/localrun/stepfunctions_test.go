package localrun

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
)

// TestStepFunctionsAPI drives the local Step Functions API with the AWS SDK, as the ingest
// function does.
func TestStepFunctionsAPI(t *testing.T) {
	release := make(chan struct{})
	var ran []string
	api := newStepFunctions(t.Context(), StateMachineARN, func(ctx context.Context, input any, name string) (*Execution, error) {
		ran = append(ran, name)
		<-release
		return &Execution{Status: StatusSucceeded, Output: json.RawMessage(`{"done":true}`)}, nil
	})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c := sfn.NewFromConfig(aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		BaseEndpoint: aws.String(srv.URL),
	})
	ctx := t.Context()
	start := func(name, input string) (*sfn.StartExecutionOutput, error) {
		return c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(StateMachineARN), Name: aws.String(name), Input: aws.String(input)})
	}

	first, err := start("s3-abc", `{"nip":"9999999999"}`)
	if err != nil {
		t.Fatal(err)
	}
	wantARN := "arn:aws:states:eu-central-1:123456789012:execution:ksef-local:s3-abc"
	if aws.ToString(first.ExecutionArn) != wantARN || first.StartDate == nil {
		t.Errorf("StartExecution = %s at %v, want %s", aws.ToString(first.ExecutionArn), first.StartDate, wantARN)
	}
	// Running: the same name and input answer as the first start did.
	again, err := start("s3-abc", `{"nip":"9999999999"}`)
	if err != nil || aws.ToString(again.ExecutionArn) != wantARN {
		t.Errorf("repeated start: %v, %v", again, err)
	}
	var exists *sfntypes.ExecutionAlreadyExists
	if _, err := start("s3-abc", `{"nip":"5265877635"}`); !errors.As(err, &exists) {
		t.Errorf("start with another input: %v, want ExecutionAlreadyExists", err)
	}
	desc, err := c.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(wantARN)})
	if err != nil || desc.Status != sfntypes.ExecutionStatusRunning || aws.ToString(desc.Input) != `{"nip":"9999999999"}` || aws.ToString(desc.Name) != "s3-abc" {
		t.Errorf("DescribeExecution while running = %+v, %v", desc, err)
	}

	close(release)
	exec, err := api.wait(ctx, "s3-abc")
	if err != nil || exec.Status != StatusSucceeded {
		t.Fatalf("wait = %+v, %v", exec, err)
	}
	// Ended: even the same input is ExecutionAlreadyExists.
	if _, err := start("s3-abc", `{"nip":"9999999999"}`); !errors.As(err, &exists) {
		t.Errorf("start after the end: %v, want ExecutionAlreadyExists", err)
	}
	desc, err = c.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(wantARN)})
	if err != nil || desc.Status != sfntypes.ExecutionStatusSucceeded || aws.ToString(desc.Output) != `{"done":true}` || desc.StopDate == nil {
		t.Errorf("DescribeExecution after the end = %+v, %v", desc, err)
	}
	if !reflect.DeepEqual(ran, []string{"s3-abc"}) || !reflect.DeepEqual(api.started(), []string{"s3-abc"}) {
		t.Errorf("ran %v, started %v; want one execution", ran, api.started())
	}

	var noMachine *sfntypes.StateMachineDoesNotExist
	if _, err := c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(StateMachineARN + "-other"), Name: aws.String("x")}); !errors.As(err, &noMachine) {
		t.Errorf("start of another state machine: %v, want StateMachineDoesNotExist", err)
	}
	var badName *sfntypes.InvalidName
	if _, err := start("no spaces allowed", "{}"); !errors.As(err, &badName) {
		t.Errorf("start with a bad name: %v, want InvalidName", err)
	}
	var noExecution *sfntypes.ExecutionDoesNotExist
	if _, err := c.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(wantARN + "x")}); !errors.As(err, &noExecution) {
		t.Errorf("describe of an unknown execution: %v, want ExecutionDoesNotExist", err)
	}
	if calls := api.snapshot(); calls["StepFunctions.StartExecution"] != 6 || calls["StepFunctions.DescribeExecution"] != 3 {
		t.Errorf("calls %v", calls)
	}
	if _, err := api.wait(ctx, "never-started"); err == nil {
		t.Error("wait for an execution never started succeeded")
	}
}

// TestObjectCreatedEvent: the harness's event has the shape of the documented event the ingest
// function's tests use, with S3's key encoding.
func TestObjectCreatedEvent(t *testing.T) {
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	b, err := ObjectCreatedEvent("ksef-invoices-local", "inbox/9999999999/Faktura lutowa (2) nr+1.xml", "v1", "b1946ac92492d2347c6235b4d2611184", 3387, at)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../functions/ingest/testdata/object-created.json")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jsonPaths(t, b), jsonPaths(t, doc); !reflect.DeepEqual(got, want) {
		t.Errorf("event fields %v,\nwant the documented %v", got, want)
	}
	var ev events.EventBridgeEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	var d struct {
		Object struct {
			Key       string `json:"key"`
			VersionID string `json:"version-id"`
			Size      int64  `json:"size"`
		} `json:"object"`
	}
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		t.Fatal(err)
	}
	if ev.DetailType != "Object Created" || ev.Source != "aws.s3" || !ev.Time.Equal(at) ||
		d.Object.Key != "inbox/9999999999/Faktura+lutowa+%282%29+nr%2B1.xml" || d.Object.VersionID != "v1" || d.Object.Size != 3387 {
		t.Errorf("event %+v, detail %+v", ev, d)
	}
}

// jsonPaths lists the paths of a JSON document's object fields.
func jsonPaths(t *testing.T, b []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var paths []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, x := range m {
				paths = append(paths, prefix+k)
				walk(prefix+k+".", x)
			}
		}
	}
	walk("", v)
	sort.Strings(paths)
	return paths
}
