package localrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// ModulePath is the module whose root FindModuleRoot looks for.
const ModulePath = "github.com/ksef-serverless/ksef-serverless"

// ErrMissingTool is wrapped by the errors of the Find functions when a program the harness
// needs is not installed. Tests skip on it (unless CI is set).
var ErrMissingTool = errors.New("localrun: required tool missing")

// FindModuleRoot returns the directory of the go.mod of ModulePath, looking in dir and its parents.
func FindModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+ModulePath)) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find module root: no go.mod of %s in %s or its parents", ModulePath, dir)
		}
	}
}

// FindRIE returns the path of aws-lambda-rie: from the given directories (empty ones are
// skipped; `make tools` installs it in bin/), else from $PATH, else from `go env GOBIN` or
// `go env GOPATH`/bin, where `go install` puts it.
func FindRIE(ctx context.Context, dirs ...string) (string, error) {
	const name = "aws-lambda-rie"
	for _, d := range dirs {
		if p := filepath.Join(d, name); d != "" && isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, v := range []string{"GOBIN", "GOPATH"} {
		out, err := exec.CommandContext(ctx, "go", "env", v).Output()
		if err != nil {
			continue
		}
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			if d == "" {
				continue
			}
			if v == "GOPATH" {
				d = filepath.Join(d, "bin")
			}
			p := filepath.Join(d, name)
			if isExecutable(p) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: %s (go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d)", ErrMissingTool, name)
}

// FindMoto returns the path of moto_server from $PATH.
func FindMoto() (string, error) {
	p, err := exec.LookPath("moto_server")
	if err != nil {
		return "", fmt.Errorf("%w: moto_server (Python package moto[server])", ErrMissingTool)
	}
	return p, nil
}

// FindNode returns Node 22 from localDir/node_modules/.bin/node (the npm package "node", which
// aws-local-stepfunctions 3 needs: Node 20 lacks Promise.withResolvers), and checks that
// run-execution.mjs and its modules are there.
func FindNode(localDir string) (string, error) {
	node := filepath.Join(localDir, "node_modules", ".bin", "node")
	if !isExecutable(node) {
		return "", fmt.Errorf("%w: %s (run `npm ci` in %s)", ErrMissingTool, node, localDir)
	}
	for _, p := range []string{"run-execution.mjs", "node_modules/aws-local-stepfunctions", "node_modules/@aws-sdk/client-lambda", "node_modules/jsonpath-plus"} {
		if _, err := os.Stat(filepath.Join(localDir, p)); err != nil {
			return "", fmt.Errorf("%w: %s (run `npm ci` in %s)", ErrMissingTool, filepath.Join(localDir, p), localDir)
		}
	}
	return node, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// BuildFunction builds the Lambda function in package pkg (a path relative to the module root,
// like "./functions/send") into out (conventionally .../<name>/bootstrap) the way it is
// deployed, but for this machine's architecture: GOOS=linux, CGO_ENABLED=0, -tags lambda.norpc.
func BuildFunction(ctx context.Context, moduleRoot, pkg, out string) error {
	return goBuild(ctx, moduleRoot, pkg, out, []string{"GOOS=linux", "GOARCH=" + runtime.GOARCH, "CGO_ENABLED=0"}, "-tags", "lambda.norpc", "-trimpath")
}

// BuildCommand builds the command in package pkg (relative to the module root) into out with the
// host's settings (cgo as configured: the KSeF emulator validates XML with libxml2).
func BuildCommand(ctx context.Context, moduleRoot, pkg, out string) error {
	return goBuild(ctx, moduleRoot, pkg, out, nil)
}

func goBuild(ctx context.Context, dir, pkg, out string, env []string, flags ...string) error {
	args := append([]string{"build"}, flags...)
	args = append(args, "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// hostEnv returns this process's environment without AWS settings, for helper programs (moto,
// the emulator) that must not pick up a developer's AWS profile or endpoints.
func hostEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// baseEnv is the minimal environment of the Lambda functions and the runner: what a program
// needs to start, nothing of the developer's AWS setup.
func baseEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, k := range []string{"HOME", "TMPDIR", "TZ", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, k+"="+m[k])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
