package localruntest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
)

// RequireTools returns the module root and the path of aws-lambda-rie for a test that runs the
// local stack. It skips the test in -short mode, and when a tool of the stack is missing (node
// with local/'s packages, aws-lambda-rie, moto_server) it skips the test or, with the
// environment variable CI set, fails it: CI must run these tests. aws-lambda-rie is looked for
// in KSEF_LOCAL_BIN (where `make build-local` puts the binaries) and the module's bin/ first.
func RequireTools(tb testing.TB) (root, rie string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("skipping the end-to-end run in -short mode")
	}
	root, err := localrun.FindModuleRoot(".")
	if err != nil {
		tb.Fatal(err)
	}
	rie, err = find(tb.Context(), root, os.Getenv("KSEF_LOCAL_BIN"))
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("CI is set but the local stack cannot run: %v", err)
		}
		tb.Skipf("skipping: %v", err)
	}
	return root, rie
}

// find looks for every tool of the stack and returns aws-lambda-rie's path, or all that is
// missing.
func find(ctx context.Context, root, bin string) (rie string, err error) {
	var missing []error
	if _, err := localrun.FindNode(filepath.Join(root, "local")); err != nil {
		missing = append(missing, err)
	}
	rie, err = localrun.FindRIE(ctx, bin, filepath.Join(root, "bin"))
	if err != nil {
		missing = append(missing, err)
	}
	if _, err := localrun.FindMoto(); err != nil {
		missing = append(missing, err)
	}
	return rie, errors.Join(missing...)
}
