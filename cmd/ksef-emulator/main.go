// Command ksef-emulator serves a local KSeF 2.0 API emulator (package emulator) over HTTP.
//
//	ksef-emulator --addr 127.0.0.1:8080 --token 5265877635=my-token [--config emulator.json] [--validate]
//
// When ready it prints one JSON line to stdout, {"baseUrl":"http://127.0.0.1:8080/v2",
// "adminUrl":"http://127.0.0.1:8080/admin"}, and logs one JSON line per request to stderr. It
// stops cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ksef-emulator:", err)
		stop()
		os.Exit(1)
	}
}
