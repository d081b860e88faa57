package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"go.yaml.in/yaml/v4"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// repoRoot is the repository root, seen from this package's directory (where go test runs).
const repoRoot = "../.."

func readRepoFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

// ---- The definition ----------------------------------------------------------------------

// definition is a JSONPath Amazon States Language definition, as far as these tests model it
// (also the ItemProcessor of an inline Map state).
type definition struct {
	StartAt string
	States  map[string]*state
}

// definitions are the repository's state machine definitions and their execution inputs.
var definitions = []struct {
	file  string
	input reflect.Type
}{
	{"statemachine.asl.json", reflect.TypeFor[flow.Input]()},
	{"batch.asl.json", reflect.TypeFor[flow.BatchInput]()},
}

type state struct {
	Type           string
	Resource       string
	Parameters     map[string]any
	Result         any
	Next           string
	Default        string
	Choices        []map[string]any
	Retry          []retrier
	Catch          []catcher
	TimeoutSeconds *float64
	SecondsPath    string
	ErrorPath      string
	CausePath      string
	Error          string
	Cause          string
	ItemsPath      string
	ItemSelector   map[string]any
	MaxConcurrency *float64

	resultPathRaw json.RawMessage
	processor     *definition // a Map state's ItemProcessor
}

type retrier struct {
	ErrorEquals     []string
	IntervalSeconds *float64
	MaxAttempts     *float64
	BackoffRate     *float64
	MaxDelaySeconds *float64
	JitterStrategy  string
}

type catcher struct {
	ErrorEquals []string
	ResultPath  json.RawMessage
	Next        string
}

// resultPath returns where a state's result goes: "$" by default, or nowhere (discard) for null.
func (st *state) resultPath() (string, bool) { return resultPath(st.resultPathRaw) }

func (c *catcher) resultPath() (string, bool) { return resultPath(c.ResultPath) }

func resultPath(raw json.RawMessage) (string, bool) {
	switch {
	case raw == nil:
		return "$", false
	case string(raw) == "null":
		return "", true
	}
	var p string
	if err := json.Unmarshal(raw, &p); err != nil {
		return "$.<not a string>", false
	}
	return p, false
}

// stateFields lists, per state type, the fields beyond Type, Comment, Next and End that these
// tests model; a definition using any other (InputPath, ResultSelector, Assign, ...) fails
// until the tests learn it.
var stateFields = map[string][]string{
	"Pass":    {"Parameters", "Result", "ResultPath"},
	"Task":    {"Resource", "Parameters", "ResultPath", "TimeoutSeconds", "Retry", "Catch"},
	"Choice":  {"Choices", "Default"},
	"Wait":    {"SecondsPath"},
	"Succeed": {},
	"Fail":    {"Error", "Cause", "ErrorPath", "CausePath"},
	"Map":     {"ItemsPath", "ItemSelector", "ItemProcessor", "MaxConcurrency", "ResultPath", "Retry", "Catch"},
}

func parseDefinition(data []byte) (*definition, error) {
	var top struct {
		Comment       string
		StartAt       string
		QueryLanguage string
		States        map[string]json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("decode definition: %w", err)
	}
	if top.QueryLanguage != "" && top.QueryLanguage != "JSONPath" {
		return nil, fmt.Errorf("QueryLanguage %s is not modelled by these tests", top.QueryLanguage)
	}
	return parseStates(top.StartAt, top.States)
}

// parseStates parses the states of a definition or of a Map state's ItemProcessor.
func parseStates(startAt string, states map[string]json.RawMessage) (*definition, error) {
	def := &definition{StartAt: startAt, States: map[string]*state{}}
	for name, raw := range states {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil {
			return nil, fmt.Errorf("state %s: %w", name, err)
		}
		st := &state{resultPathRaw: keys["ResultPath"]}
		if err := json.Unmarshal(raw, st); err != nil {
			return nil, fmt.Errorf("state %s: %w", name, err)
		}
		allowed, ok := stateFields[st.Type]
		if !ok {
			return nil, fmt.Errorf("state %s: type %q is not modelled by these tests", name, st.Type)
		}
		for k := range keys {
			if !slices.Contains(allowed, k) && !slices.Contains([]string{"Type", "Comment", "Next", "End"}, k) {
				return nil, fmt.Errorf("state %s: field %s is not modelled by these tests", name, k)
			}
		}
		if st.Type == "Map" {
			p, err := parseProcessor(keys["ItemProcessor"])
			if err != nil {
				return nil, fmt.Errorf("state %s: %w", name, err)
			}
			st.processor = p
		}
		def.States[name] = st
	}
	if _, ok := def.States[def.StartAt]; !ok {
		return nil, fmt.Errorf("StartAt %q is not a state", def.StartAt)
	}
	return def, nil
}

// parseProcessor parses an inline Map state's ItemProcessor (a distributed Map, with its item
// reader and child executions, is not modelled).
func parseProcessor(raw json.RawMessage) (*definition, error) {
	if raw == nil {
		return nil, errors.New("a Map state without ItemProcessor is not modelled by these tests")
	}
	var p struct {
		Comment         string
		ProcessorConfig struct{ Mode string }
		StartAt         string
		States          map[string]json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("ItemProcessor: %w", err)
	}
	if p.ProcessorConfig.Mode != "" && p.ProcessorConfig.Mode != "INLINE" {
		return nil, fmt.Errorf("ItemProcessor mode %s is not modelled by these tests", p.ProcessorConfig.Mode)
	}
	def, err := parseStates(p.StartAt, p.States)
	if err != nil {
		return nil, fmt.Errorf("ItemProcessor: %w", err)
	}
	return def, nil
}

// all returns every state, those of Map states' processors too, named "Map/State".
func (def *definition) all() map[string]*state {
	out := map[string]*state{}
	for name, st := range def.States {
		out[name] = st
		if st.processor != nil {
			for inner, ist := range st.processor.all() {
				out[name+"/"+inner] = ist
			}
		}
	}
	return out
}

func repoDefinition(t *testing.T, file string) *definition {
	t.Helper()
	def, err := parseDefinition(readRepoFile(t, file))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return def
}

// tasks returns the names of the Task states, in Map states' processors too.
func (def *definition) tasks() []string {
	all := def.all()
	var names []string
	for _, name := range sortedKeys(all) {
		if all[name].Type == "Task" {
			names = append(names, name)
		}
	}
	return names
}

// ---- The template --------------------------------------------------------------------------

// cfnTag is a CloudFormation intrinsic function in YAML short form: !Ref X, !GetAtt X.Arn,
// !Sub "...". Nothing else of the template needs more than plain YAML.
type cfnTag struct {
	Tag   string
	Value string
}

func decodeNode(n *yaml.Node) any {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return decodeNode(n.Content[0])
	case yaml.AliasNode:
		return decodeNode(n.Alias)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = decodeNode(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		var items []any
		var scalars []string
		for _, c := range n.Content {
			items = append(items, decodeNode(c))
			scalars = append(scalars, c.Value)
		}
		if strings.HasPrefix(n.Tag, "!") && n.Tag != "!!seq" {
			return cfnTag{Tag: n.Tag, Value: strings.Join(scalars, ".")} // !GetAtt [X, Arn]
		}
		return items
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return cfnTag{Tag: n.Tag, Value: n.Value}
	}
	return n.Value
}

func repoTemplate(t *testing.T) map[string]any {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(readRepoFile(t, "template.yaml"), &doc); err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	m, ok := decodeNode(&doc).(map[string]any)
	if !ok {
		t.Fatal("template.yaml is not a mapping")
	}
	return m
}

// get walks nested mappings; nil if a key is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// getAttArn returns X of "!GetAtt X.Arn" (or its long forms).
func getAttArn(v any) (string, bool) {
	var s string
	switch v := v.(type) {
	case cfnTag:
		if v.Tag != "!GetAtt" {
			return "", false
		}
		s = v.Value
	case map[string]any:
		switch a := v["Fn::GetAtt"].(type) {
		case string:
			s = a
		case []any:
			if len(a) == 2 {
				s = fmt.Sprint(a[0]) + "." + fmt.Sprint(a[1])
			}
		}
	}
	return strings.CutSuffix(s, ".Arn")
}

// function is a Lambda function of the template that the definition invokes.
type function struct {
	logicalID string // ChallengeFunction
	name      string // challenge: functions/challenge
	timeout   float64
	in, out   string // Go types of Handle's input and output: "ChallengeInput", "any"
}

// flowTypes are the flow types a Handle method may take or return.
var flowTypes = map[string]reflect.Type{
	"Input":          reflect.TypeFor[flow.Input](),
	"ChallengeInput": reflect.TypeFor[flow.ChallengeInput](),
	"AuthState":      reflect.TypeFor[flow.AuthState](),
	"SendInput":      reflect.TypeFor[flow.SendInput](),
	"Submission":     reflect.TypeFor[flow.Submission](),
	"PollInput":      reflect.TypeFor[flow.PollInput](),
	"PollResult":     reflect.TypeFor[flow.PollResult](),
	"BatchRequest":   reflect.TypeFor[flow.BatchRequest](),
}

// dynamicOutputs says what a function whose Handle returns any gives back, by the value of
// one of its Parameters (functions/poll's tests pin these types).
var dynamicOutputs = map[string]struct {
	param string
	types map[string]reflect.Type
}{
	"poll": {"kind", map[string]reflect.Type{
		flow.PollAuth:    reflect.TypeFor[flow.AuthState](),
		flow.PollInvoice: reflect.TypeFor[flow.PollResult](),
		flow.PollFailure: reflect.TypeFor[flow.PollResult](),
	}},
	"batch": {"action", map[string]reflect.Type{
		flow.BatchSend:    reflect.TypeFor[flow.BatchSendResult](),
		flow.BatchPoll:    reflect.TypeFor[flow.BatchPollResult](),
		flow.BatchRelease: reflect.TypeFor[flow.BatchSendResult](),
	}},
}

// types resolves the function's Go input and output types for a Task sending params.
func (f function) types(params *shape) (in, out reflect.Type, err error) {
	in, ok := flowTypes[f.in]
	if !ok {
		return nil, nil, fmt.Errorf("functions/%s: Handle takes %s, which these tests do not know (add it to flowTypes)", f.name, f.in)
	}
	if f.out != "any" {
		if out, ok = flowTypes[f.out]; !ok {
			return nil, nil, fmt.Errorf("functions/%s: Handle returns %s, which these tests do not know (add it to flowTypes)", f.name, f.out)
		}
		return in, out, nil
	}
	dyn, ok := dynamicOutputs[f.name]
	if !ok {
		return nil, nil, fmt.Errorf("functions/%s: Handle returns any; say what in dynamicOutputs", f.name)
	}
	var value any
	if p := params.fields[dyn.param]; p != nil {
		value = p.s.literal
	}
	v, _ := value.(string)
	if out, ok = dyn.types[v]; !ok {
		return nil, nil, fmt.Errorf("functions/%s: Parameters %s %v is not one of %v", f.name, dyn.param, value, sortedKeys(dyn.types))
	}
	return in, out, nil
}

// handlerTypes reads the input and output types of the Handle method in
// functions/<name>/handler.go: "ChallengeInput" for flow.ChallengeInput, "any" for any.
func handlerTypes(name string) (in, out string, err error) {
	path := filepath.Join(repoRoot, "functions", name, "handler.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return "", "", err
	}
	typeName := func(e ast.Expr) string {
		switch e := e.(type) {
		case *ast.SelectorExpr:
			if x, ok := e.X.(*ast.Ident); ok && x.Name == "flow" {
				return e.Sel.Name
			}
		case *ast.Ident:
			if e.Name == "any" {
				return "any"
			}
		case *ast.InterfaceType:
			if len(e.Methods.List) == 0 {
				return "any"
			}
		}
		return fmt.Sprintf("%T", e)
	}
	var flat = func(fl *ast.FieldList) []ast.Expr {
		var out []ast.Expr
		for _, f := range fl.List {
			for range max(len(f.Names), 1) {
				out = append(out, f.Type)
			}
		}
		return out
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Recv == nil || fd.Name.Name != "Handle" {
			continue
		}
		params, results := flat(fd.Type.Params), flat(fd.Type.Results)
		if len(params) != 2 || len(results) != 2 {
			return "", "", fmt.Errorf("%s: Handle is not func(ctx, in) (out, error)", path)
		}
		return typeName(params[1]), typeName(results[0]), nil
	}
	return "", "", fmt.Errorf("%s: no Handle method", path)
}

// repoFunctions resolves a definition's substitutions to the template's functions; it fails
// the test on anything it cannot resolve (TestSubstitutions says what exactly).
func repoFunctions(t *testing.T, file string) map[string]function {
	t.Helper()
	tpl := repoTemplate(t)
	sm := stateMachine(t, tpl, file)
	subs, _ := get(sm, "Properties", "DefinitionSubstitutions").(map[string]any)
	fns := map[string]function{}
	for sub, v := range subs {
		id, ok := getAttArn(v)
		if !ok {
			t.Fatalf("substitution %s is %v, want !GetAtt <Function>.Arn", sub, v)
		}
		name := strings.ToLower(strings.TrimSuffix(id, "Function"))
		in, out, err := handlerTypes(name)
		if err != nil {
			t.Fatalf("substitution %s: %v", sub, err)
		}
		fns[sub] = function{logicalID: id, name: name, timeout: functionTimeout(tpl, id), in: in, out: out}
	}
	return fns
}

// stateMachine returns the template's one state machine resource for the definition file.
func stateMachine(t *testing.T, tpl map[string]any, file string) map[string]any {
	t.Helper()
	_, sm := stateMachineID(t, tpl, file)
	return sm
}

// stateMachineID returns the logical id and the resource of the state machine for file.
func stateMachineID(t *testing.T, tpl map[string]any, file string) (string, map[string]any) {
	t.Helper()
	var ids []string
	resources, _ := tpl["Resources"].(map[string]any)
	for id, r := range resources {
		r, _ := r.(map[string]any)
		if get(r, "Type") == "AWS::Serverless::StateMachine" && get(r, "Properties", "DefinitionUri") == file {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("%d state machines with DefinitionUri %s in template.yaml, want 1", len(ids), file)
	}
	return ids[0], resources[ids[0]].(map[string]any)
}

// functionTimeout is a function's Timeout, or the Globals' (3 s, Lambda's default, if neither).
func functionTimeout(tpl map[string]any, id string) float64 {
	for _, v := range []any{get(tpl, "Resources", id, "Properties", "Timeout"), get(tpl, "Globals", "Function", "Timeout")} {
		if s, ok := v.(string); ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				return f
			}
		}
	}
	return 3
}

// ---- Tests ---------------------------------------------------------------------------------

// statesErrors are Step Functions' own error names.
var statesErrors = []string{
	"States.ALL", "States.HeartbeatTimeout", "States.Timeout", "States.TaskFailed", "States.Permissions",
	"States.ResultPathMatchFailure", "States.ParameterPathFailure", "States.QueryEvaluationError",
	"States.BranchFailed", "States.NoChoiceMatched", "States.IntrinsicFailure", "States.ExceedToleratedFailureThreshold",
	"States.ItemReaderFailed", "States.ResultWriterFailed", "States.Runtime", "States.DataLimitExceeded",
}

var lambdaError = regexp.MustCompile(`^Lambda\.[A-Z][A-Za-z]+$`)

func checkErrorName(name string) error {
	switch {
	case slices.Contains(flow.ErrorNames(), name), slices.Contains(statesErrors, name), lambdaError.MatchString(name):
		return nil
	case strings.HasPrefix(name, "States."):
		return fmt.Errorf("%q is not a Step Functions error name", name)
	}
	return fmt.Errorf("%q is neither a Step Functions or Lambda error nor one of flow.ErrorNames() %v", name, flow.ErrorNames())
}

func TestErrorNames(t *testing.T) {
	// What aws-lambda-go reports as errorType for each flow error is its Go type name.
	var names []string
	for _, err := range []error{&flow.RetryableError{}, &flow.RateLimitedError{}, &flow.RejectedError{}, &flow.BadInputError{}, &flow.AuthFailedError{}} {
		names = append(names, flow.ErrorType(err))
	}
	if got := flow.ErrorNames(); !slices.Equal(got, names) {
		t.Errorf("flow.ErrorNames() = %v, want the errorType names of the flow error types %v", got, names)
	}

	checked := 0
	for _, d := range definitions {
		all := repoDefinition(t, d.file).all()
		for _, name := range sortedKeys(all) {
			checked += checkStateErrorNames(t, d.file+" "+name, all[name])
		}
	}
	if checked == 0 {
		t.Error("no error name in the definitions: nothing checked")
	}
	for _, e := range []string{"RetryableError", "States.Timeout", "Lambda.Unknown", "Lambda.TooManyRequestsException"} {
		if err := checkErrorName(e); err != nil {
			t.Errorf("checkErrorName(%q) = %v, want nil", e, err)
		}
	}
	for _, e := range []string{"wrapError", "errorString", "RetryableErr", "States.Everything", "lambda.Unknown"} {
		if checkErrorName(e) == nil {
			t.Errorf("checkErrorName(%q) = nil, want an error", e)
		}
	}
}

// checkStateErrorNames checks the error names a state uses and returns how many it checked.
func checkStateErrorNames(t *testing.T, name string, st *state) int {
	t.Helper()
	checked := 0
	for i, r := range st.Retry {
		for _, e := range r.ErrorEquals {
			checked++
			if err := checkErrorName(e); err != nil {
				t.Errorf("%s Retry[%d]: %v", name, i, err)
			}
		}
	}
	for i, c := range st.Catch {
		for _, e := range c.ErrorEquals {
			checked++
			if err := checkErrorName(e); err != nil {
				t.Errorf("%s Catch[%d]: %v", name, i, err)
			}
		}
	}
	// Pass states that stand in for a caught error (a polling limit reached) and Fail
	// states must use the same names.
	for _, v := range []any{get(st.Parameters, "Error"), get(st.Result, "Error"), st.Error} {
		if e, ok := v.(string); ok && e != "" {
			checked++
			if err := checkErrorName(e); err != nil {
				t.Errorf("%s Error: %v", name, err)
			}
		}
	}
	return checked
}

var substitution = regexp.MustCompile(`\$\{([^}]*)\}`)

func TestSubstitutions(t *testing.T) {
	for _, d := range definitions {
		t.Run(d.file, func(t *testing.T) { checkSubstitutions(t, d.file) })
	}
}

func checkSubstitutions(t *testing.T, file string) {
	raw := readRepoFile(t, file)
	used := map[string]bool{}
	for _, m := range substitution.FindAllSubmatch(raw, -1) {
		used[string(m[1])] = true
	}
	tpl := repoTemplate(t)
	sm := stateMachine(t, tpl, file)
	subs, _ := get(sm, "Properties", "DefinitionSubstitutions").(map[string]any)
	for _, name := range sortedKeys(used) {
		if _, ok := subs[name]; !ok {
			t.Errorf("the definition uses ${%s}, which is not in the state machine's DefinitionSubstitutions", name)
		}
	}
	invokable := invokablePolicies(sm)
	referenced := map[string]bool{}
	for _, name := range sortedKeys(subs) {
		if !used[name] {
			t.Errorf("DefinitionSubstitutions has %s, which the definition does not use", name)
		}
		id, ok := getAttArn(subs[name])
		if !ok {
			t.Errorf("substitution %s is %v, want !GetAtt <Function>.Arn", name, subs[name])
			continue
		}
		referenced[id] = true
		if res, _ := get(tpl, "Resources", id).(map[string]any); res == nil {
			t.Errorf("substitution %s refers to %s, which is not a resource of the template", name, id)
			continue
		}
		if get(tpl, "Resources", id, "Type") != "AWS::Serverless::Function" {
			t.Errorf("%s is a %v, want an AWS::Serverless::Function", id, get(tpl, "Resources", id, "Type"))
		}
		if !invokable[id] {
			t.Errorf("the state machine has no LambdaInvokePolicy for %s", id)
		}
	}
	for id := range invokable {
		if !referenced[id] {
			t.Errorf("the state machine may invoke %s, which its definition does not use (least privilege)", id)
		}
	}
	if len(subs) == 0 {
		t.Error("no DefinitionSubstitutions: nothing checked")
	}
}

// invokablePolicies returns the functions the state machine has a LambdaInvokePolicy for.
func invokablePolicies(sm map[string]any) map[string]bool {
	out := map[string]bool{}
	policies, _ := get(sm, "Properties", "Policies").([]any)
	for _, p := range policies {
		if ref, ok := get(p, "LambdaInvokePolicy", "FunctionName").(cfnTag); ok && ref.Tag == "!Ref" {
			out[ref.Value] = true
		}
	}
	return out
}

// TestFunctions checks every function of the template: it is built by the Makefile from
// functions/<name> as the definition's functions are, and something invokes it: the state
// machine (its definition) or, for an entry point, an EventBridge rule target with a Lambda
// permission for the rule, or a SAM event source.
func TestFunctions(t *testing.T) {
	tpl := repoTemplate(t)
	inDefinition := map[string]bool{}
	for _, d := range definitions {
		subs, _ := get(stateMachine(t, tpl, d.file), "Properties", "DefinitionSubstitutions").(map[string]any)
		for _, v := range subs {
			if id, ok := getAttArn(v); ok {
				inDefinition[id] = true
			}
		}
	}
	makefile := string(readRepoFile(t, "Makefile"))
	resources, _ := tpl["Resources"].(map[string]any)
	checked := 0
	for _, id := range sortedKeys(resources) {
		res, _ := resources[id].(map[string]any)
		if get(res, "Type") != "AWS::Serverless::Function" {
			continue
		}
		checked++
		checkFunctionBuild(t, tpl, id, res, makefile)
		if inDefinition[id] {
			continue
		}
		if err := entryPoint(resources, id); err != nil {
			t.Errorf("function %s is not invoked by the state machine and %v", id, err)
		}
	}
	if checked < len(inDefinition) || checked == 0 {
		t.Errorf("%d functions checked", checked)
	}
}

func checkFunctionBuild(t *testing.T, tpl map[string]any, id string, res map[string]any, makefile string) {
	t.Helper()
	switch {
	case get(res, "Metadata", "BuildMethod") != "makefile":
		t.Errorf("%s: Metadata.BuildMethod is %v, want makefile", id, get(res, "Metadata", "BuildMethod"))
	case get(res, "Properties", "CodeUri") != ".":
		t.Errorf("%s: CodeUri is %v, want . (the Makefile at the root builds it)", id, get(res, "Properties", "CodeUri"))
	}
	for prop, want := range map[string]string{"Runtime": "provided.al2023", "Handler": "bootstrap"} {
		got := get(res, "Properties", prop)
		if got == nil {
			got = get(tpl, "Globals", "Function", prop)
		}
		if got != want {
			t.Errorf("%s: %s is %v, want %s", id, prop, got, want)
		}
	}
	dir, ok := strings.CutSuffix(id, "Function")
	if !ok {
		t.Errorf("%s: a function's logical id must be <Name>Function", id)
		return
	}
	dir = strings.ToLower(dir)
	for _, f := range []string{"main.go", "handler.go"} {
		if _, err := os.Stat(filepath.Join(repoRoot, "functions", dir, f)); err != nil {
			t.Errorf("%s: functions/%s/%s: %v", id, dir, f, err)
		}
	}
	recipe := regexp.MustCompile(`(?m)^build-` + regexp.QuoteMeta(id) + `:.*\n\t(.*)$`).FindStringSubmatch(makefile)
	switch {
	case recipe == nil:
		t.Errorf("Makefile has no build-%s target (sam build runs it for BuildMethod makefile)", id)
	case !regexp.MustCompile(`(functions/|,)`+dir+`\b`).MatchString(recipe[1]) || !strings.Contains(recipe[1], "$(ARTIFACTS_DIR)/bootstrap"):
		t.Errorf("Makefile build-%s runs %q, want it to build functions/%s into $(ARTIFACTS_DIR)/bootstrap", id, recipe[1], dir)
	}
	if !regexp.MustCompile(`(?m)^FUNCTIONS\s*:?=.*\b` + dir + `\b`).MatchString(makefile) {
		t.Errorf("Makefile FUNCTIONS lacks %s (make build and build-local build every function)", dir)
	}
}

// entryPoint says why the function is not an entry point, or nil if it is one: a SAM event
// source (Events), or the target of an AWS::Events::Rule with an AWS::Lambda::Permission that
// lets events.amazonaws.com invoke it for that rule. Events must not be lost: such a target has
// a retry policy and a dead-letter queue, and the function (invoked asynchronously) an
// on-failure destination.
func entryPoint(resources map[string]any, id string) error {
	if events, _ := get(resources[id], "Properties", "Events").(map[string]any); len(events) > 0 {
		return nil
	}
	found := false
	for _, rid := range sortedKeys(resources) {
		if get(resources[rid], "Type") != "AWS::Events::Rule" {
			continue
		}
		targets, _ := get(resources[rid], "Properties", "Targets").([]any)
		for _, tg := range targets {
			if fn, ok := getAttArn(get(tg, "Arn")); !ok || fn != id {
				continue
			}
			found = true
			if _, ok := getAttArn(get(tg, "DeadLetterConfig", "Arn")); !ok {
				return fmt.Errorf("rule %s targets it without a DeadLetterConfig", rid)
			}
			if get(tg, "RetryPolicy") == nil {
				return fmt.Errorf("rule %s targets it without a RetryPolicy", rid)
			}
			if !permitted(resources, id, rid) {
				return fmt.Errorf("rule %s targets it without an AWS::Lambda::Permission for events.amazonaws.com from that rule", rid)
			}
		}
	}
	if !found {
		return errors.New("no event source or EventBridge rule targets it")
	}
	if get(resources[id], "Properties", "EventInvokeConfig", "DestinationConfig", "OnFailure", "Destination") == nil {
		return errors.New("it is invoked asynchronously without an EventInvokeConfig on-failure destination")
	}
	return nil
}

func permitted(resources map[string]any, fn, rule string) bool {
	for _, pid := range sortedKeys(resources) {
		p := resources[pid]
		if get(p, "Type") != "AWS::Lambda::Permission" || get(p, "Properties", "Principal") != "events.amazonaws.com" {
			continue
		}
		name, _ := get(p, "Properties", "FunctionName").(cfnTag)
		src, _ := getAttArn(get(p, "Properties", "SourceArn"))
		if name.Tag == "!Ref" && name.Value == fn && src == rule {
			return true
		}
	}
	return false
}

func TestEntryPoint(t *testing.T) {
	fn := func(extra map[string]any) map[string]any {
		props := map[string]any{"EventInvokeConfig": map[string]any{"DestinationConfig": map[string]any{"OnFailure": map[string]any{"Destination": cfnTag{"!GetAtt", "Q.Arn"}}}}}
		for k, v := range extra {
			props[k] = v
		}
		return map[string]any{"Type": "AWS::Serverless::Function", "Properties": props}
	}
	rule := func(target map[string]any) map[string]any {
		return map[string]any{"Type": "AWS::Events::Rule", "Properties": map[string]any{"Targets": []any{target}}}
	}
	goodTarget := map[string]any{"Arn": cfnTag{"!GetAtt", "F.Arn"}, "RetryPolicy": map[string]any{}, "DeadLetterConfig": map[string]any{"Arn": cfnTag{"!GetAtt", "Q.Arn"}}}
	perm := map[string]any{"Type": "AWS::Lambda::Permission", "Properties": map[string]any{
		"FunctionName": cfnTag{"!Ref", "F"}, "Principal": "events.amazonaws.com", "SourceArn": cfnTag{"!GetAtt", "R.Arn"}}}
	without := func(m map[string]any, k string) map[string]any {
		c := map[string]any{}
		for kk, v := range m {
			if kk != k {
				c[kk] = v
			}
		}
		return c
	}
	for _, tt := range []struct {
		name      string
		resources map[string]any
		want      string // "" for an entry point
	}{
		{"rule, permission, DLQ", map[string]any{"F": fn(nil), "R": rule(goodTarget), "P": perm}, ""},
		{"SAM event source", map[string]any{"F": fn(map[string]any{"Events": map[string]any{"Api": map[string]any{"Type": "HttpApi"}}})}, ""},
		{"nothing invokes it", map[string]any{"F": fn(nil)}, "no event source"},
		{"no permission", map[string]any{"F": fn(nil), "R": rule(goodTarget)}, "without an AWS::Lambda::Permission"},
		{"no dead-letter queue", map[string]any{"F": fn(nil), "R": rule(without(goodTarget, "DeadLetterConfig")), "P": perm}, "without a DeadLetterConfig"},
		{"no retry policy", map[string]any{"F": fn(nil), "R": rule(without(goodTarget, "RetryPolicy")), "P": perm}, "without a RetryPolicy"},
		{"no on-failure destination", map[string]any{"F": map[string]any{"Type": "AWS::Serverless::Function"}, "R": rule(goodTarget), "P": perm}, "on-failure destination"},
	} {
		err := entryPoint(tt.resources, "F")
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v, want an entry point", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
}

// TestTaskResilience checks every Task's Retry and Catch: transient failures are retried with
// capped, fully jittered backoff; what retrying cannot fix is not retried; anything else is
// caught; and Step Functions does not give up on a function that is still running.
func TestTaskResilience(t *testing.T) {
	for _, d := range definitions {
		t.Run(d.file, func(t *testing.T) { checkTaskResilience(t, d.file) })
	}
}

func checkTaskResilience(t *testing.T, file string) {
	def := repoDefinition(t, file)
	all := def.all()
	fns := repoFunctions(t, file)
	transient := []string{"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException", "RetryableError"}
	// Repeating these gains nothing (a rejection, bad input, refused credentials), or ignores
	// KSeF's Retry-After (RateLimitedError, which the Catch turns into a Wait).
	neverRetried := []string{"RejectedError", "BadInputError", "AuthFailedError", "RateLimitedError", "States.ALL", "States.TaskFailed", "States.Runtime", "States.Permissions"}
	tasks := def.tasks()
	if len(tasks) == 0 {
		t.Fatal("no Task states")
	}
	for _, name := range tasks {
		st := all[name]
		retried := map[string]bool{}
		if len(st.Retry) == 0 {
			t.Errorf("%s has no Retry", name)
		}
		for i, r := range st.Retry {
			switch {
			case r.JitterStrategy != "FULL":
				t.Errorf("%s Retry[%d]: JitterStrategy %q, want FULL", name, i, r.JitterStrategy)
			case r.MaxDelaySeconds == nil || *r.MaxDelaySeconds <= 0:
				t.Errorf("%s Retry[%d]: no MaxDelaySeconds", name, i)
			case r.BackoffRate != nil && *r.BackoffRate < 1:
				t.Errorf("%s Retry[%d]: BackoffRate %v, want at least 1", name, i, *r.BackoffRate)
			case r.MaxAttempts != nil && *r.MaxAttempts < 1:
				t.Errorf("%s Retry[%d]: MaxAttempts %v retries nothing", name, i, *r.MaxAttempts)
			}
			for _, e := range r.ErrorEquals {
				retried[e] = true
				if slices.Contains(neverRetried, e) {
					t.Errorf("%s Retry[%d] retries %s", name, i, e)
				}
			}
		}
		for _, e := range transient {
			if !retried[e] {
				t.Errorf("%s does not retry %s", name, e)
			}
		}
		if n := len(st.Catch); n == 0 || !slices.Equal(st.Catch[n-1].ErrorEquals, []string{"States.ALL"}) {
			t.Errorf("%s: the last Catch must be States.ALL alone; catchers %+v", name, st.Catch)
		}
		for i, c := range st.Catch[:max(len(st.Catch)-1, 0)] {
			if slices.Contains(c.ErrorEquals, "States.ALL") {
				t.Errorf("%s Catch[%d]: States.ALL before the last catcher", name, i)
			}
		}
		fn, ok := fns[strings.TrimSuffix(strings.TrimPrefix(st.Resource, "${"), "}")]
		switch {
		case !ok:
			t.Errorf("%s: resource %s is not a substitution of a function", name, st.Resource)
		case st.TimeoutSeconds == nil || *st.TimeoutSeconds <= fn.timeout:
			t.Errorf("%s: TimeoutSeconds %v, want more than %s's Timeout of %v s (a task timed out while the function still runs may act twice)",
				name, st.TimeoutSeconds, fn.logicalID, fn.timeout)
		}
	}
}

// TestDataFlow follows the definition through every way the data allows (see dataflow_test.go)
// and checks every path it reads against what can be there when it is read, and every
// Parameters object it sends against the function's Go input type.
func TestDataFlow(t *testing.T) {
	for _, d := range definitions {
		t.Run(d.file, func(t *testing.T) { checkDataFlow(t, d.file, d.input) })
	}
}

func checkDataFlow(t *testing.T, file string, input reflect.Type) {
	def := repoDefinition(t, file)
	fns := repoFunctions(t, file)
	a := newAnalyzer(def, func(name string, st *state, params *shape) (reflect.Type, reflect.Type, error) {
		fn, ok := fns[strings.TrimSuffix(strings.TrimPrefix(st.Resource, "${"), "}")]
		if !ok {
			return nil, nil, fmt.Errorf("resource %s is not a substitution of a function", st.Resource)
		}
		return fn.types(params)
	})
	a.run(shapeOfType(input, "the execution input ("+input.String()+")"))
	for _, p := range sortedKeys(a.problems) {
		t.Error(p)
	}
	if a.reads < 30 {
		t.Errorf("only %d paths checked", a.reads)
	}
}

// TestAnalyzer shows that the data-flow check finds what it is there to find, on small
// definitions.
func TestAnalyzer(t *testing.T) {
	type in struct {
		NIP     string         `json:"nip"`
		Invoice *flow.S3Object `json:"invoice,omitempty"`
	}
	type out struct {
		Ready bool   `json:"ready"`
		Ref   string `json:"ref,omitempty"`
		Wait  int    `json:"wait"`
	}
	task := func(string, *state, *shape) (reflect.Type, reflect.Type, error) {
		return reflect.TypeFor[in](), reflect.TypeFor[out](), nil
	}
	// def builds a definition: Init (a Pass) -> Call (a Task) -> the states given, and a
	// catch-all of Call to Done.
	def := func(call string, states string) string {
		return `{"StartAt":"Init","States":{
			"Init":{"Type":"Pass","Result":{"n":0,"s":"x"},"ResultPath":"$.run","Next":"Call"},
			"Call":{"Type":"Task","Resource":"f","Parameters":` + call + `,"ResultPath":"$.run.out","Next":"Check",
				"Catch":[{"ErrorEquals":["RateLimitedError"],"ResultPath":"$.run.error","Next":"Throttled"},
				         {"ErrorEquals":["States.ALL"],"ResultPath":"$.run.error","Next":"Done"}]},
			"Done":{"Type":"Succeed"},` + states + `}}`
	}
	ok := `{"nip.$":"$.nip"}`
	check := `"Check":{"Type":"Choice","Choices":[{"Variable":"$.run.out.ready","BooleanEquals":true,"Next":"Done"}],"Default":"Done"}`
	throttled := `"Throttled":{"Type":"Pass","Parameters":{"reason.$":"States.StringToJson($.run.error.Cause)"},"ResultPath":"$.run.t","Next":"Wait"},
		"Wait":{"Type":"Wait","SecondsPath":"$.run.t.reason.retryAfterSeconds","Next":"Done"}`
	throttledTwice := `"Throttled":{"Type":"Pass","Parameters":{"payload.$":"States.StringToJson($.run.error.Cause)"},"ResultPath":"$.run.t","Next":"Reason"},
		"Reason":{"Type":"Pass","Parameters":{"reason.$":"States.StringToJson($.run.t.payload.errorMessage)"},"ResultPath":"$.run.t","Next":"Wait"},
		"Wait":{"Type":"Wait","SecondsPath":"$.run.t.reason.retryAfterSeconds","Next":"Done"}`
	toDone := `"Throttled":{"Type":"Pass","Next":"Done"}`

	tests := []struct {
		name string
		def  string
		want []string // problems, each found by substring; none if empty
	}{
		{"consistent", def(ok, check+","+toDone), nil},
		{"Cause parsed twice for the wait", def(ok, check+","+throttledTwice), nil},
		{"field read that the output type lacks", def(ok, `"Check":{"Type":"Choice","Choices":[{"Variable":"$.run.out.status","NumericEquals":1,"Next":"Done"}],"Default":"Done"},`+toDone),
			[]string{`Check: reads $.run.out.status: the output of Call (contract.out) has no field "status"`}},
		{"field read that may be omitted", def(ok, `"Check":{"Type":"Choice","Choices":[{"Variable":"$.run.out.ref","StringEquals":"","Next":"Done"}],"Default":"Done"},`+toDone),
			[]string{`field "ref" of the output of Call (contract.out) is omitted when empty`}},
		{"Parameters key the input type lacks", def(`{"nip.$":"$.nip","attempt":1}`, check+","+toDone),
			[]string{`Call: Parameters.attempt: contract.in has no JSON field "attempt"`}},
		{"Parameters of the wrong JSON type", def(`{"nip.$":"$.run.n"}`, check+","+toDone),
			[]string{`Call: Parameters.nip is Init's Result.n, a number, but contract.in.nip is a string`}},
		{"path read before anything wrote it", def(`{"nip.$":"$.run.out.ready"}`, check+","+toDone),
			[]string{`Call: reads $.run.out.ready: Init's Result has no field "out"`}},
		{"comparison of the wrong type", def(ok, `"Check":{"Type":"Choice","Choices":[{"Variable":"$.run.out.wait","StringEquals":"1","Next":"Done"}],"Default":"Done"},`+toDone),
			[]string{"the rule never matches"}},
		{"Cause parsed once: the Lambda error payload has no wait", def(ok, check+","+throttled),
			[]string{`Wait: reads $.run.t.reason.retryAfterSeconds: the Lambda error payload (aws-lambda-go messages.InvokeResponse_Error) has no field "retryAfterSeconds"`}},
		{"unreachable state", def(ok, check+","+toDone+`,"Orphan":{"Type":"Succeed"}`), []string{"Orphan: never reached"}},
		{"transition to nowhere", def(ok, `"Check":{"Type":"Choice","Choices":[],"Default":"Nowhere"},`+toDone), []string{`Check: goes to "Nowhere"`}},
		{"literal choices pruned", `{"StartAt":"Init","States":{
			"Init":{"Type":"Pass","Result":{"resume":"A"},"ResultPath":"$.t","Next":"Route"},
			"Route":{"Type":"Choice","Choices":[{"Variable":"$.t.resume","StringEquals":"A","Next":"A"},{"Variable":"$.t.resume","StringEquals":"B","Next":"B"}],"Default":"A"},
			"A":{"Type":"Succeed"},"B":{"Type":"Succeed"}}}`, []string{"B: never reached"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseDefinition([]byte(tt.def))
			if err != nil {
				t.Fatalf("%v\n%s", err, tt.def)
			}
			a := newAnalyzer(d, task)
			a.run(shapeOfType(reflect.TypeFor[in](), "the execution input"))
			got := sortedKeys(a.problems)
			if len(tt.want) == 0 && len(got) > 0 {
				t.Errorf("problems %q, want none", got)
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, w) }) {
					t.Errorf("problems %q, want one containing %q", got, w)
				}
			}
		})
	}
}

// TestAnalyzerMap shows that the data-flow check follows an inline Map state into its
// processor: the items' element type, $$.Map.Item.Value in the ItemSelector, the processor's
// own states.
func TestAnalyzerMap(t *testing.T) {
	type item struct {
		Name string `json:"name"`
		Note string `json:"note,omitempty"`
	}
	type listOut struct {
		Items []item `json:"items"`
		Count int    `json:"count"`
	}
	type useIn struct {
		Name string `json:"name"`
	}
	task := func(name string, _ *state, _ *shape) (reflect.Type, reflect.Type, error) {
		if name == "List" {
			return reflect.TypeFor[struct{}](), reflect.TypeFor[listOut](), nil
		}
		return reflect.TypeFor[useIn](), reflect.TypeFor[struct{}](), nil
	}
	def := func(itemsPath, selector, processor, after string) string {
		return `{"StartAt":"List","States":{
			"List":{"Type":"Task","Resource":"f","Parameters":{},"ResultPath":"$.list","Next":"Each"},
			"Each":{"Type":"Map","ItemsPath":"` + itemsPath + `","ItemSelector":` + selector + `,"ResultPath":"$.done","Next":"After",
				"ItemProcessor":{"ProcessorConfig":{"Mode":"INLINE"},"StartAt":"Use","States":{` + processor + `}}},
			"After":{"Type":"Pass","Parameters":{"any.$":` + after + `},"ResultPath":"$.summary","Next":"End"},
			"End":{"Type":"Succeed"}}}`
	}
	use := `"Use":{"Type":"Task","Resource":"f","Parameters":{"name.$":"$.name"},"ResultPath":null,"Next":"Ok"},"Ok":{"Type":"Pass","Result":"ok","End":true}`
	contains := `"States.ArrayContains($.done, 'ok')"`
	tests := []struct {
		name string
		def  string
		want []string
	}{
		{"consistent", def("$.list.items", `{"name.$":"$$.Map.Item.Value.name"}`, use, contains), nil},
		{"element field the type lacks", def("$.list.items", `{"name.$":"$$.Map.Item.Value.title"}`, use, contains),
			[]string{`Each: reads $.title: an element of the output of List (contract.listOut).items has no field "title"`}},
		{"element field that may be omitted", def("$.list.items", `{"name.$":"$$.Map.Item.Value.note"}`, use, contains),
			[]string{`field "note" of an element of the output of List`}},
		{"processor reads what its input lacks", def("$.list.items", `{"title.$":"$$.Map.Item.Value.name"}`, use, contains),
			[]string{`Each/Use: reads $.name: Each's ItemSelector has no field "name"`}},
		{"items not an array", def("$.list", `{"name.$":"$.list.count"}`, use, contains),
			[]string{"Each: ItemsPath $.list is the output of List (contract.listOut), a object, not an array"}},
		{"processor state never reached", def("$.list.items", `{"name.$":"$$.Map.Item.Value.name"}`, use+`,"Orphan":{"Type":"Succeed"}`, contains),
			[]string{"Each/Orphan: never reached"}},
		{"ArrayContains of a non-array", def("$.list.items", `{"name.$":"$$.Map.Item.Value.name"}`, use, `"States.ArrayContains($.list.count, 'ok')"`),
			[]string{"After: States.ArrayContains($.list.count, 'ok'): argument the output of List (contract.listOut).count is a number, not an array"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseDefinition([]byte(tt.def))
			if err != nil {
				t.Fatalf("%v\n%s", err, tt.def)
			}
			a := newAnalyzer(d, task)
			a.run(objectShape("the execution input"))
			got := sortedKeys(a.problems)
			if len(tt.want) == 0 && len(got) > 0 {
				t.Errorf("problems %q, want none", got)
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, w) }) {
					t.Errorf("problems %q, want one containing %q", got, w)
				}
			}
			if !slices.Contains(sortedKeys(d.all()), "Each/Use") {
				t.Errorf("all() = %q, want the processor's states as Each/<name>", sortedKeys(d.all()))
			}
		})
	}
}

func TestParseDefinitionRejectsUnmodelledFields(t *testing.T) {
	for _, d := range []string{
		`{"StartAt":"A","States":{"A":{"Type":"Pass","InputPath":"$.x","End":true}}}`,
		`{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"f","ResultSelector":{},"End":true}}}`,
		`{"StartAt":"A","States":{"A":{"Type":"Map","End":true}}}`,
		`{"StartAt":"A","States":{"A":{"Type":"Map","ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED"},"StartAt":"B","States":{"B":{"Type":"Succeed"}}},"End":true}}}`,
		`{"StartAt":"A","States":{"A":{"Type":"Map","ItemProcessor":{"StartAt":"B","States":{"B":{"Type":"Pass","InputPath":"$","End":true}}},"End":true}}}`,
		`{"StartAt":"A","States":{"A":{"Type":"Parallel","Branches":[],"End":true}}}`,
		`{"StartAt":"A","QueryLanguage":"JSONata","States":{"A":{"Type":"Pass","End":true}}}`,
		`{"StartAt":"B","States":{"A":{"Type":"Pass","End":true}}}`,
	} {
		if _, err := parseDefinition([]byte(d)); err == nil {
			t.Errorf("parseDefinition(%s) accepted what these tests do not model", d)
		}
	}
}

// secretWords are words that name a credential; a name containing one of them (or a key
// qualified as one) is not allowed in the execution's state.
var (
	secretWords   = []string{"token", "tokens", "secret", "secrets", "password", "passwd", "passphrase", "credential", "credentials", "pem", "jwt", "bearer", "private", "apikey", "privatekey", "authorization"}
	keyQualifiers = []string{"access", "api", "aes", "symmetric", "encryption", "session", "signing", "private", "secret"}
)

// words splits a name into lower-case words at case changes and punctuation:
// "sessionKey" -> session key, "KSeFToken" -> k se f token, "upo_key" -> upo key.
func words(name string) []string {
	var out []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			out = append(out, string(cur))
			cur = nil
		}
	}
	rs := []rune(name)
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		if unicode.IsUpper(r) && i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(rs[i-1]))) {
			flush()
		}
		cur = append(cur, unicode.ToLower(r))
	}
	flush()
	return out
}

func secretLike(name string) bool {
	ws := words(name)
	for i, w := range ws {
		if slices.Contains(secretWords, w) {
			return true
		}
		if w == "key" && i > 0 && slices.Contains(keyQualifiers, ws[i-1]) {
			return true
		}
	}
	return false
}

func TestSecretLike(t *testing.T) {
	for name, want := range map[string]bool{
		"accessToken": true, "refreshToken": true, "authenticationToken": true, "ksefToken": true, "KSeFToken": true,
		"privateKeyPem": true, "certificatePem": true, "sessionKey": true, "aes_key": true, "secretString": true,
		"SECRET": true, "bearer": true, "apiKey": true,
		"referenceNumber": false, "sessionReferenceNumber": false, "upoKey": false, "resultKey": false, "key": false,
		"invoiceHash": false, "retryAfterSeconds": false, "statusCode": false, "nip": false, "errorMessage": false,
	} {
		if got := secretLike(name); got != want {
			t.Errorf("secretLike(%q) = %t, want %t (words %q)", name, got, want, words(name))
		}
	}
}

// TestNoSecretsInState checks the names of everything the execution's state holds: what the
// definition writes (Parameters, Results, ResultPaths, the paths it reads) and every field of
// what the functions return into it.
func TestNoSecretsInState(t *testing.T) {
	var names []string
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range sortedKeys(v) {
				names = append(names, where+" key "+strings.TrimSuffix(k, ".$"))
				walk(where+"."+k, v[k])
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", where, i), x)
			}
		case string:
			for _, p := range regexp.MustCompile(`\$[A-Za-z0-9_.$]*`).FindAllString(v, -1) {
				names = append(names, where+" path "+p)
			}
		}
	}
	for _, d := range definitions {
		all := repoDefinition(t, d.file).all()
		for _, name := range sortedKeys(all) {
			walkState(walk, d.file+" "+name, all[name])
		}
	}
	var fields func(where string, s *shape)
	fields = func(where string, s *shape) {
		for _, k := range sortedKeys(s.fields) {
			names = append(names, where+" field "+k)
			fields(where+"."+k, s.fields[k].s)
		}
		if s.encoded != nil {
			fields(where+" (JSON)", s.encoded)
		}
	}
	for _, typ := range flowTypes {
		fields(typ.String(), shapeOfType(typ, typ.String()))
	}
	for _, d := range definitions {
		fields(d.input.String(), shapeOfType(d.input, d.input.String()))
	}
	for _, typ := range dynamicOutputs["batch"].types {
		fields(typ.String(), shapeOfType(typ, typ.String()))
	}
	fields("caught error", caughtError(flow.ErrorNames()))
	if len(names) < 50 {
		t.Errorf("only %d names checked", len(names))
	}
	for _, n := range names {
		parts := strings.Fields(n)
		for _, w := range strings.FieldsFunc(parts[len(parts)-1], func(r rune) bool { return r == '.' || r == '$' }) {
			if secretLike(w) {
				t.Errorf("%s: %q names a secret; tokens, keys and credentials stay in Secrets Manager", n, w)
			}
		}
	}
}

// walkState feeds walk every name a state writes or reads.
func walkState(walk func(where string, v any), name string, st *state) {
	walk(name+" Parameters", st.Parameters)
	walk(name+" ItemSelector", st.ItemSelector)
	walk(name+" Result", st.Result)
	if p, _ := st.resultPath(); p != "" {
		walk(name+" ResultPath", p)
	}
	for _, c := range st.Catch {
		if p, _ := c.resultPath(); p != "" {
			walk(name+" Catch ResultPath", p)
		}
	}
	for _, p := range []string{st.SecondsPath, st.ErrorPath, st.CausePath, st.ItemsPath} {
		walk(name, p)
	}
	for _, ch := range st.Choices {
		walk(name+" Choices", ch)
	}
}

// TestHandlerTypes checks that the functions' Handle methods are read correctly.
func TestHandlerTypes(t *testing.T) {
	want := map[string][2]string{"challenge": {"ChallengeInput", "AuthState"}, "send": {"SendInput", "Submission"}, "poll": {"PollInput", "any"}, "batch": {"BatchRequest", "any"}}
	for name, w := range want {
		in, out, err := handlerTypes(name)
		if err != nil || in != w[0] || out != w[1] {
			t.Errorf("handlerTypes(%s) = %s, %s, %v; want %s, %s", name, in, out, err, w[0], w[1])
		}
	}
	if _, _, err := handlerTypes("nonexistent"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("handlerTypes(nonexistent) error %v, want not found", err)
	}
}
