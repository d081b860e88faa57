// Package contract has no code, only tests. They read statemachine.asl.json, template.yaml,
// the Makefile and functions/*/handler.go from the repository and check that these files and
// the Go types of internal/flow agree, so that a change on one side that the other does not
// follow fails `go test` instead of an execution on AWS:
//
//   - every ErrorEquals name is a Step Functions or Lambda error name, or the errorType of one
//     of the flow error types, which aws-lambda-go takes from the Go type name;
//   - every ${...} substitution of the definition is one of the state machine's
//     DefinitionSubstitutions in the template and vice versa, each the ARN of a function built
//     by the Makefile from functions/<name>, which the state machine may invoke;
//   - every JSONPath the definition reads exists, with the right JSON type, in every payload that
//     can be there when it is read: the execution input (flow.Input), the results of Pass
//     states, the outputs of the functions (the Go types their Handle methods return, decoded
//     through their JSON tags) and the errors a Catch stores (the Lambda error payload of
//     aws-lambda-go), following every path through the state machine; a field that may be
//     omitted (omitempty) does not count as present, since a missing path fails an execution
//     with States.Runtime; and every Parameters key sent to a function is a JSON field of its
//     Handle method's input type;
//   - every Task retries transient errors with full jitter and a maximum delay, catches
//     States.ALL, and times out later than the function does;
//   - no name in the state the execution carries looks like a token, a key or a secret.
package contract
