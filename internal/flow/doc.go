// Package flow holds the JSON documents that the Step Functions state machine
// (statemachine.asl.json) passes to and from the Lambda handlers, and the small set of named
// error types the handlers return so that the state machine can match them in Retry and Catch.
//
// Step Functions matches ErrorEquals against the Lambda errorType, which aws-lambda-go takes from
// the Go type name of the returned error. A wrapped error reports as "wrapError" and an
// errors.New one as "errorString", so every handler converts its failures into exactly one of
// the types here before returning. Their names are part of the contract with the definition; a
// test checks that every name the definition uses exists here.
//
// The state payload never carries an invoice body, a token, a key or any other secret: only
// pointers (S3 bucket/key/version, KSeF reference numbers) and outcomes.
package flow
