package flow

// ClassifyWith is Classify with the random source of the throttle jitter given, so that tests
// outside the package see exact waits.
func ClassifyWith(stage string, err error, intN func(n int) int) error {
	return classify(stage, err, intN)
}
