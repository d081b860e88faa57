package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// release runs after the run failed (KSeF or AWS failing beyond the retries, credentials
// refused): it goes through the NIP's waiting invoices and gives up those this run took in but
// did not get processed (failed, with a report saying why and how to send them again), and
// returns the sessions this run did close, for the state machine to store their outcomes still.
func (h *handler) release(ctx context.Context, in flow.BatchRequest) (flow.BatchSendResult, error) {
	reason := flow.Reason{Message: "the run failed"}
	if in.Error != nil {
		reason = flow.ParseReason(in.Error.Cause)
		if reason.Message == "" {
			reason.Message = in.Error.Error
		}
	}
	client, err := h.clients(ctx, in.NIP)
	if err != nil {
		// Invoices taken in but not sent need no KSeF call; sessions do (and fail below).
		h.log.WarnContext(ctx, "no KSeF client to check sessions with", slog.String("nip", in.NIP), slog.String("error", err.Error()))
		client = nil
	}
	r := h.newRun(ctx, in, client)
	r.release, r.claimUntil = &reason, time.Time{}
	if err := r.collect(ctx, ""); err != nil {
		return flow.BatchSendResult{}, err
	}
	r.out.More, r.out.After = false, ""
	h.log.InfoContext(ctx, "batch run released its invoices", slog.String("nip", in.NIP), slog.String("executionName", in.ExecutionName),
		slog.Int("abandoned", r.out.Abandoned), slog.Int("sessions", len(r.out.Sessions)), slog.String("reason", reason.Message))
	return r.out, nil
}
