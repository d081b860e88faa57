package localrun

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// emulatorLog reads the KSeF emulator's output: the JSON line announcing its base URL, and one
// JSON log line per HTTP request (with method, path and status), which it counts.
type emulatorLog struct {
	ready     chan string // receives the announced base URL once
	readyOnce sync.Once

	mu       sync.Mutex
	requests map[string]int // "POST /auth/ksef-token" -> count (path without the /v2 prefix)
	statuses map[string]map[int]int
}

func newEmulatorLog() *emulatorLog {
	return &emulatorLog{
		ready:    make(chan string, 1),
		requests: make(map[string]int),
		statuses: make(map[string]map[int]int),
	}
}

// line handles one line of the emulator's output. Lines that are not JSON objects are ignored.
func (l *emulatorLog) line(s string) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") {
		return
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return
	}
	method, _ := m["method"].(string)
	path, _ := m["path"].(string)
	if method != "" && path != "" {
		key := method + " " + apiPath(path)
		status := 0
		for _, k := range []string{"status", "statusCode"} {
			if f, ok := m[k].(float64); ok {
				status = int(f)
				break
			}
		}
		l.mu.Lock()
		l.requests[key]++
		if l.statuses[key] == nil {
			l.statuses[key] = make(map[int]int)
		}
		l.statuses[key][status]++
		l.mu.Unlock()
		return
	}
	for _, k := range []string{"baseUrl", "baseURL", "base_url", "url", "URL"} {
		if u, ok := m[k].(string); ok && strings.HasPrefix(u, "http") {
			l.readyOnce.Do(func() { l.ready <- strings.TrimRight(u, "/") })
			return
		}
	}
}

// apiPath strips the query and the /v2 prefix from a logged request path.
func apiPath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	if rest, ok := strings.CutPrefix(p, "/v2/"); ok {
		return "/" + rest
	}
	return p
}

func (l *emulatorLog) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.requests))
	for k, v := range l.requests {
		out[k] = v
	}
	return out
}

// startEmulator starts the KSeF emulator on a free port with one KSeF token per NIP and waits
// until it has announced its base URL (or, failing that, until its public-key endpoint answers).
func startEmulator(ctx context.Context, bin, config string, args []string, tokens map[string]string, logDir string, timeout time.Duration) (*process, *emulatorLog, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, "", err
	}
	argv := []string{bin, "--addr", hostPort(port)}
	for _, nip := range sortedKeys(tokens) {
		argv = append(argv, "--token", nip+"="+tokens[nip])
	}
	if config != "" {
		argv = append(argv, "--config", config)
	}
	argv = append(argv, args...)
	log := newEmulatorLog()
	p, err := startProcess(processSpec{
		name:    "ksef-emulator",
		argv:    argv,
		env:     hostEnv(),
		logPath: logDir + "/emulator.log",
		lines:   log.line,
	})
	if err != nil {
		return nil, nil, "", err
	}
	base := "http://" + hostPort(port) + "/v2"
	err = waitReady(ctx, p, timeout, 50*time.Millisecond, func(ctx context.Context) error {
		select {
		case u := <-log.ready:
			base = u
			return nil
		default:
		}
		return probeHTTP(ctx, base+"/security/public-key-certificates")
	})
	if err != nil {
		p.stop(time.Second)
		return nil, nil, "", fmt.Errorf("start ksef emulator: %w", err)
	}
	return p, log, base, nil
}
