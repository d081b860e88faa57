package secrets_test

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// A Lambda function builds one Store in main and keeps it for the life of the execution
// environment, so that its cache and its refresh collapsing span invocations.
func ExampleNew() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		slog.Error("load AWS config", "error", err)
		os.Exit(1)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	store := secrets.New(secretsmanager.NewFromConfig(cfg),
		secrets.WithLogger(logger),
		secrets.WithKMSKeyID(os.Getenv("STATE_KMS_KEY_ID")), // empty: the aws/secretsmanager key
	)
	_ = store // handed to the handler value
}

// Recording an authentication in progress: Update retries the function if another process
// changed the state meanwhile, so it only looks at its argument.
func ExampleStore_Update() {
	var (
		ctx   context.Context
		store *secrets.Store
		nip   = "5265877635"
		init  ksef.Token // authenticationToken from POST /auth/ksef-token
		ref   string     // its referenceNumber
	)
	_, err := store.Update(ctx, nip, func(st *secrets.State) error {
		if st.PendingAuth != nil && st.PendingAuth.ReferenceNumber == ref {
			return secrets.ErrNoChange // already recorded: no write
		}
		st.PendingAuth = &secrets.PendingAuth{ReferenceNumber: ref, AuthenticationToken: init, Method: secrets.AuthToken}
		return nil
	})
	if errors.Is(err, secrets.ErrConflict) {
		// the state kept changing: let Step Functions retry the task
	}
}

// Business calls take their bearer token from the Store, which refreshes it with the KSeF
// client when it nears expiry.
func ExampleStore_AccessToken() {
	var (
		ctx    context.Context
		store  *secrets.Store
		client *ksef.Client
		nip    = "5265877635"
	)
	token, err := store.AccessToken(ctx, nip, client)
	switch {
	case errors.Is(err, secrets.ErrLoginRequired):
		// start a new authentication (challenge, token or XAdES, poll, redeem, SaveTokens)
	case err != nil:
		// Secrets Manager or KSeF failed; retry later
	default:
		_ = token // Authorization: Bearer token.Reveal()
	}
}
