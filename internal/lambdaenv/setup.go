package lambdaenv

import (
	"context"
	"log/slog"
	"os"
)

// Setup starts a function's main: it builds the logger (NewLogger), reads the configuration
// from the process environment with load (LoadConfig, or a function's own loader built on it)
// and builds the Env with New, whose Log is that logger.
//
// Setup does not return on failure: it logs one structured error ("bad configuration" or
// "cannot start", with the cause under "error") and exits the process with status 1, so that a
// function that cannot work never takes an event. Only a main may call it.
func Setup(load func(getenv func(string) string) (Config, error)) *Env {
	log := NewLogger()
	env, stage, err := setup(context.Background(), log, os.Getenv, load)
	if err != nil {
		log.Error(stage, slog.String("error", err.Error()))
		os.Exit(1)
	}
	return env
}

// setup is Setup up to the exit: it returns the Env or, with the error, the stage that failed
// as the message to log.
func setup(ctx context.Context, log *slog.Logger, getenv func(string) string, load func(getenv func(string) string) (Config, error)) (env *Env, stage string, err error) {
	cfg, err := load(getenv)
	if err != nil {
		return nil, "bad configuration", err
	}
	if env, err = New(ctx, cfg, log); err != nil {
		return nil, "cannot start", err
	}
	return env, "", nil
}
