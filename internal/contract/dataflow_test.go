package contract

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda/messages"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// This file follows a JSONPath (Amazon States Language) definition through every way the data
// allows, with a shape for each JSON document: which fields it surely has, of which JSON type,
// with which value where the definition fixes one. Reading a path that a shape may lack is a
// problem, as it is a States.Runtime failure on AWS.

// JSON types of a shape.
const (
	kindAny     = "any"
	kindObject  = "object"
	kindString  = "string"
	kindNumber  = "number"
	kindBoolean = "boolean"
	kindArray   = "array"
	kindNull    = "null"
)

// shape describes what a JSON value surely looks like.
type shape struct {
	kind    string
	fields  map[string]*field // kindObject
	open    bool              // kindObject with keys not known in advance (a Go map)
	literal any               // the value, when the definition fixes it: string, float64 or bool
	encoded *shape            // kindString holding JSON of this shape (for States.StringToJson)
	elem    *shape            // kindArray: the shape of every element, when known
	origin  string            // what the value is, for messages
}

type field struct {
	s        *shape
	optional bool // may be absent: omitempty or omitzero in Go
}

var anyShape = &shape{kind: kindAny, origin: "a value of any shape"}

func objectShape(origin string) *shape {
	return &shape{kind: kindObject, fields: map[string]*field{}, origin: origin}
}

// key identifies a shape, to tell the states of the walk apart.
func (s *shape) key() string {
	var b strings.Builder
	s.writeKey(&b)
	return b.String()
}

func (s *shape) writeKey(b *strings.Builder) {
	b.WriteString(s.kind)
	if s.literal != nil {
		fmt.Fprintf(b, "=%q", fmt.Sprint(s.literal))
	}
	if s.open {
		b.WriteString("*")
	}
	if s.encoded != nil {
		b.WriteString("<")
		s.encoded.writeKey(b)
		b.WriteString(">")
	}
	if s.elem != nil {
		b.WriteString("[")
		s.elem.writeKey(b)
		b.WriteString("]")
	}
	if s.kind == kindObject {
		b.WriteString("{")
		for _, name := range sortedKeys(s.fields) {
			f := s.fields[name]
			b.WriteString(strconv.Quote(name))
			if f.optional {
				b.WriteString("?")
			}
			b.WriteString(":")
			f.s.writeKey(b)
			b.WriteString(",")
		}
		b.WriteString("}")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var timeType = reflect.TypeFor[time.Time]()

// shapeOfType is the shape of the JSON encoding/json makes of a value of type t. Fields with
// omitempty (where it has an effect) or omitzero are optional.
func shapeOfType(t reflect.Type, origin string) *shape {
	if t == timeType {
		return &shape{kind: kindString, origin: origin}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return shapeOfType(t.Elem(), origin)
	case reflect.Struct:
		s := objectShape(origin)
		addFields(s, t, origin)
		return s
	case reflect.String:
		return &shape{kind: kindString, origin: origin}
	case reflect.Bool:
		return &shape{kind: kindBoolean, origin: origin}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return &shape{kind: kindNumber, origin: origin}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return &shape{kind: kindString, origin: origin} // Base64
		}
		return &shape{kind: kindArray, elem: shapeOfType(t.Elem(), "an element of "+origin), origin: origin}
	case reflect.Array:
		return &shape{kind: kindArray, origin: origin}
	case reflect.Map:
		s := objectShape(origin)
		s.open = true
		return s
	}
	return &shape{kind: kindAny, origin: origin}
}

func addFields(s *shape, t reflect.Type, origin string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			addFields(s, f.Type, origin) // promoted fields
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		s.fields[name] = &field{
			s:        shapeOfType(f.Type, origin+"."+name),
			optional: omittable(f.Type, strings.Split(opts, ",")),
		}
	}
}

// omittable reports whether encoding/json may leave out a field of type t with these options.
func omittable(t reflect.Type, opts []string) bool {
	if slices.Contains(opts, "omitzero") {
		return true
	}
	if !slices.Contains(opts, "omitempty") {
		return false
	}
	switch t.Kind() {
	case reflect.Struct:
		return false // omitempty has no effect on structs
	}
	return true
}

// shapeOfJSON is the shape of a JSON value written in the definition (a Result, a constant
// Parameter). A string that holds a JSON object also records that object's shape.
func shapeOfJSON(v any, origin string) *shape {
	switch v := v.(type) {
	case map[string]any:
		s := objectShape(origin)
		for k, x := range v {
			s.fields[k] = &field{s: shapeOfJSON(x, origin+"."+k)}
		}
		return s
	case []any:
		return &shape{kind: kindArray, origin: origin}
	case string:
		s := &shape{kind: kindString, literal: v, origin: origin}
		var obj map[string]any
		if strings.HasPrefix(strings.TrimSpace(v), "{") && json.Unmarshal([]byte(v), &obj) == nil {
			s.encoded = shapeOfJSON(obj, "the JSON in "+origin)
		}
		return s
	case float64:
		return &shape{kind: kindNumber, literal: v, origin: origin}
	case bool:
		return &shape{kind: kindBoolean, literal: v, origin: origin}
	case nil:
		return &shape{kind: kindNull, origin: origin}
	}
	return &shape{kind: kindAny, origin: origin}
}

var pathPart = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// splitPath splits a reference path of the form $.a.b (the only form the definition uses).
func splitPath(p string) ([]string, error) {
	if p == "$" {
		return nil, nil
	}
	rest, ok := strings.CutPrefix(p, "$.")
	if !ok {
		return nil, fmt.Errorf("path %q: only $ and $.name.name... are modelled by this test", p)
	}
	parts := strings.Split(rest, ".")
	for _, part := range parts {
		if !pathPart.MatchString(part) {
			return nil, fmt.Errorf("path %q: only $ and $.name.name... are modelled by this test", p)
		}
	}
	return parts, nil
}

// lookup returns the shape at path p of root, or why it may be absent.
func lookup(root *shape, p string) (*shape, error) {
	if strings.HasPrefix(p, "$$.") {
		return anyShape, nil // the context object
	}
	parts, err := splitPath(p)
	if err != nil {
		return nil, err
	}
	s := root
	for i, name := range parts {
		switch {
		case s.kind == kindAny, s.open:
			return anyShape, nil
		case s.kind != kindObject:
			return nil, fmt.Errorf("%s: $.%s is %s, a %s, not an object", p, strings.Join(parts[:i], "."), s.origin, s.kind)
		}
		f, ok := s.fields[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("%s: %s has no field %q", p, s.origin, name)
		case f.optional:
			return nil, fmt.Errorf("%s: field %q of %s is omitted when empty (omitempty/omitzero), and a missing path fails the execution", p, name, s.origin)
		}
		s = f.s
	}
	return s, nil
}

// setPath returns root with the value at p replaced by v (ResultPath), creating objects on the
// way as Step Functions does.
func setPath(root *shape, p string, v *shape) (*shape, error) {
	parts, err := splitPath(p)
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return v, nil
	}
	return set(root, parts, v)
}

func set(s *shape, parts []string, v *shape) (*shape, error) {
	if s.kind != kindObject || s.open {
		return nil, fmt.Errorf("cannot set %s in %s, a %s", parts[0], s.origin, s.kind)
	}
	c := *s
	c.fields = make(map[string]*field, len(s.fields)+1)
	for k, f := range s.fields {
		c.fields[k] = f
	}
	if len(parts) == 1 {
		c.fields[parts[0]] = &field{s: v}
		return &c, nil
	}
	child := objectShape("an object created by a ResultPath")
	if f, ok := s.fields[parts[0]]; ok && !f.optional {
		child = f.s
	}
	ns, err := set(child, parts[1:], v)
	if err != nil {
		return nil, err
	}
	c.fields[parts[0]] = &field{s: ns}
	return &c, nil
}

// caughtError is what a Catch stores: {"Error": name, "Cause": text}. For a Lambda function's
// error Step Functions makes the Cause the function's error payload as a JSON string, whose
// errorMessage is, for the flow errors, the JSON of their Reason. A catcher of flow errors only
// knows its Cause is that; one that also matches Step Functions' or Lambda's own errors
// (States.Timeout, Lambda.Unknown, ...) gets text of unknown form.
func caughtError(names []string) *shape {
	te := shapeOfType(reflect.TypeFor[flow.TaskError](), "the caught error (flow.TaskError)")
	known := flow.ErrorNames()
	for _, n := range names {
		if !slices.Contains(known, n) {
			return te
		}
	}
	reason := shapeOfType(reflect.TypeFor[flow.Reason](), "the error's reason (flow.Reason)")
	for _, name := range alwaysSet[names[0]] {
		guaranteed := true
		for _, n := range names {
			guaranteed = guaranteed && slices.Contains(alwaysSet[n], name)
		}
		if f := reason.fields[name]; f != nil && guaranteed {
			f.optional = false
		}
	}
	payload := shapeOfType(reflect.TypeFor[messages.InvokeResponse_Error](), "the Lambda error payload (aws-lambda-go messages.InvokeResponse_Error)")
	payload.fields["errorMessage"].s = &shape{kind: kindString, encoded: reason, origin: "the errorMessage of the Lambda error payload"}
	te.fields["Cause"].s = &shape{kind: kindString, encoded: payload, origin: "the Cause of a caught function error"}
	return te
}

// alwaysSet lists the Reason fields, beyond those without omitempty, that a flow error always
// carries: a RateLimitedError's wait is at least 1 second (flow.WaitSeconds; pinned by the
// tests of internal/flow and of the functions).
var alwaysSet = map[string][]string{
	"RateLimitedError": {"retryAfterSeconds"},
}

// taskTypes resolves the Go input and output types of a Task state, given its Parameters.
type taskTypes func(name string, st *state, params *shape) (in, out reflect.Type, err error)

// analyzer walks a definition; problems collects what fails, keyed by state.
type analyzer struct {
	def      *definition
	task     taskTypes
	problems map[string]bool
	visited  map[string]bool
	reads    int // paths checked
	// maps walks the processors of the definition's Map states, by state name, with every
	// iteration input the walk meets.
	maps map[string]*analyzer
	// item is the shape of $$.Map.Item.Value while a Map state's ItemSelector is evaluated.
	item *shape
}

func newAnalyzer(def *definition, task taskTypes) *analyzer {
	return &analyzer{def: def, task: task, problems: map[string]bool{}, visited: map[string]bool{}, maps: map[string]*analyzer{}}
}

func (a *analyzer) problem(state, format string, args ...any) {
	a.problems[state+": "+fmt.Sprintf(format, args...)] = true
}

// maxWalk bounds the walk; the pipeline's definition needs a few thousand steps.
const maxWalk = 200_000

// run walks from StartAt with the execution input shaped as input, then reports the states
// (also of Map processors) that no way reaches.
func (a *analyzer) run(input *shape) {
	a.walk(input)
	a.finish("")
}

// finish reports unreached states and takes in the problems of the Map processors' walks.
func (a *analyzer) finish(prefix string) {
	for _, name := range sortedKeys(a.def.States) {
		if !a.visited[name] {
			a.problem(prefix+name, "never reached")
		}
	}
	for _, name := range sortedKeys(a.maps) {
		sub := a.maps[name]
		sub.finish("")
		for p := range sub.problems {
			a.problems[prefix+name+"/"+p] = true
		}
		a.reads += sub.reads
	}
}

// walk follows every way from StartAt with the input shaped as input.
func (a *analyzer) walk(input *shape) {
	type item struct {
		state string
		data  *shape
	}
	seen := map[string]bool{}
	queue := []item{{a.def.StartAt, input}}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		k := it.state + "\x00" + it.data.key()
		if seen[k] {
			continue
		}
		seen[k] = true
		if len(seen) > maxWalk {
			a.problem(it.state, "more than %d (state, data) pairs: the walk does not converge", maxWalk)
			return
		}
		a.visited[it.state] = true
		for _, next := range a.step(it.state, it.data) {
			if _, ok := a.def.States[next.state]; !ok {
				a.problem(it.state, "goes to %q, which is not a state", next.state)
				continue
			}
			queue = append(queue, item(next))
		}
	}
}

type transition struct {
	state string
	data  *shape
}

func (a *analyzer) read(state string, in *shape, p string) (*shape, bool) {
	a.reads++
	if rest, ok := strings.CutPrefix(p, "$$.Map.Item.Value"); ok && a.item != nil {
		in, p = a.item, "$"+rest
	}
	s, err := lookup(in, p)
	if err != nil {
		a.problem(state, "reads %v", err)
		return anyShape, false
	}
	return s, true
}

func (a *analyzer) write(state string, in *shape, resultPath string, discard bool, v *shape) *shape {
	if discard {
		return in
	}
	out, err := setPath(in, resultPath, v)
	if err != nil {
		a.problem(state, "ResultPath %s: %v", resultPath, err)
		return in
	}
	return out
}

func (a *analyzer) step(name string, in *shape) []transition {
	st := a.def.States[name]
	var out []transition
	next := func(to string, data *shape) {
		if to != "" {
			out = append(out, transition{to, data})
		}
	}
	switch st.Type {
	case "Pass":
		res := in
		switch {
		case st.Parameters != nil:
			res = a.params(name, st.Parameters, in, name+"'s Parameters")
		case st.Result != nil:
			res = shapeOfJSON(st.Result, name+"'s Result")
		}
		p, discard := st.resultPath()
		next(st.Next, a.write(name, in, p, discard, res))
	case "Task":
		res := anyShape
		if st.Parameters == nil {
			a.problem(name, "has no Parameters: the function would get the whole state")
		} else {
			params := a.params(name, st.Parameters, in, name+"'s Parameters")
			inT, outT, err := a.task(name, st, params)
			if err != nil {
				a.problem(name, "%v", err)
			} else {
				a.fits(name, params, shapeOfType(inT, inT.String()), "Parameters")
				res = shapeOfType(outT, "the output of "+name+" ("+outT.String()+")")
			}
		}
		p, discard := st.resultPath()
		next(st.Next, a.write(name, in, p, discard, res))
		for _, c := range st.Catch {
			p, discard := c.resultPath()
			next(c.Next, a.write(name, in, p, discard, caughtError(c.ErrorEquals)))
		}
	case "Choice":
		definite := false
		for _, rule := range st.Choices {
			r := a.rule(name, rule, in)
			to, _ := rule["Next"].(string)
			if to == "" {
				a.problem(name, "a choice rule without Next")
			}
			if r != no {
				next(to, in)
			}
			if r == yes {
				definite = true
				break
			}
		}
		if !definite {
			if st.Default == "" {
				a.problem(name, "no Default: States.NoChoiceMatched when no rule matches")
			}
			next(st.Default, in)
		}
	case "Wait":
		if st.SecondsPath != "" {
			if s, ok := a.read(name, in, st.SecondsPath); ok && s.kind != kindNumber && s.kind != kindAny {
				a.problem(name, "SecondsPath %s is %s, a %s, not a number", st.SecondsPath, s.origin, s.kind)
			}
		}
		next(st.Next, in)
	case "Fail":
		for _, p := range []string{st.ErrorPath, st.CausePath} {
			if p == "" {
				continue
			}
			if s, ok := a.read(name, in, p); ok && s.kind != kindString && s.kind != kindAny {
				a.problem(name, "%s is %s, a %s, not a string", p, s.origin, s.kind)
			}
		}
	case "Map":
		res := a.mapState(name, st, in)
		p, discard := st.resultPath()
		next(st.Next, a.write(name, in, p, discard, res))
		for _, c := range st.Catch {
			p, discard := c.resultPath()
			next(c.Next, a.write(name, in, p, discard, caughtError(c.ErrorEquals)))
		}
	case "Succeed":
	default:
		a.problem(name, "state type %q is not modelled by this test", st.Type)
	}
	return out
}

// mapState walks an inline Map state's processor with the iteration input that its
// ItemSelector builds from an element of the array at ItemsPath ($$.Map.Item.Value), and
// returns the shape of the Map's result: an array of what the iterations return.
func (a *analyzer) mapState(name string, st *state, in *shape) *shape {
	itemsPath := st.ItemsPath
	if itemsPath == "" {
		itemsPath = "$"
	}
	items, ok := a.read(name, in, itemsPath)
	elem := anyShape
	switch {
	case !ok, items.kind == kindAny:
	case items.kind != kindArray:
		a.problem(name, "ItemsPath %s is %s, a %s, not an array", itemsPath, items.origin, items.kind)
	case items.elem != nil:
		elem = items.elem
	}
	iteration := elem
	if st.ItemSelector != nil {
		a.item = elem
		iteration = a.params(name, st.ItemSelector, in, name+"'s ItemSelector")
		a.item = nil
	}
	sub, ok := a.maps[name]
	if !ok {
		sub = newAnalyzer(st.processor, a.task)
		a.maps[name] = sub
	}
	sub.walk(iteration)
	return &shape{kind: kindArray, origin: "the results of " + name}
}

// params evaluates Parameters (or a nested object of them) against the state input.
func (a *analyzer) params(state string, v any, in *shape, origin string) *shape {
	m, ok := v.(map[string]any)
	if !ok {
		return shapeOfJSON(v, origin)
	}
	s := objectShape(origin)
	for _, k := range sortedKeys(m) {
		x := m[k]
		name, isPath := strings.CutSuffix(k, ".$")
		if !isPath {
			s.fields[k] = &field{s: a.params(state, x, in, origin+"."+k)}
			continue
		}
		expr, _ := x.(string)
		s.fields[name] = &field{s: a.eval(state, expr, in)}
	}
	return s
}

var intrinsicCall = regexp.MustCompile(`^(States\.[A-Za-z]+)\((.*)\)$`)

// eval evaluates a path or an intrinsic function call.
func (a *analyzer) eval(state, expr string, in *shape) *shape {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "$") {
		s, _ := a.read(state, in, expr)
		return s
	}
	if len(expr) >= 2 && strings.HasPrefix(expr, "'") && strings.HasSuffix(expr, "'") {
		lit := strings.ReplaceAll(expr[1:len(expr)-1], `\'`, "'")
		return &shape{kind: kindString, literal: lit, origin: expr}
	}
	m := intrinsicCall.FindStringSubmatch(expr)
	if m == nil {
		if f, err := strconv.ParseFloat(expr, 64); err == nil {
			return &shape{kind: kindNumber, literal: f, origin: expr}
		}
		a.problem(state, "expression %q is not modelled by this test", expr)
		return anyShape
	}
	var args []*shape
	for _, arg := range splitArgs(m[2]) {
		args = append(args, a.eval(state, arg, in))
	}
	switch m[1] {
	case "States.MathAdd":
		for _, s := range args {
			if s.kind != kindNumber && s.kind != kindAny {
				a.problem(state, "%s: argument %s is a %s, not a number", expr, s.origin, s.kind)
			}
		}
		return &shape{kind: kindNumber, origin: expr}
	case "States.ArrayContains":
		if len(args) != 2 {
			a.problem(state, "%s takes two arguments", expr)
		} else if s := args[0]; s.kind != kindArray && s.kind != kindAny {
			a.problem(state, "%s: argument %s is a %s, not an array", expr, s.origin, s.kind)
		}
		return &shape{kind: kindBoolean, origin: expr}
	case "States.StringToJson":
		if len(args) != 1 {
			a.problem(state, "%s takes one argument", expr)
			return anyShape
		}
		switch s := args[0]; {
		case s.kind == kindAny:
			return anyShape
		case s.kind != kindString:
			a.problem(state, "%s: argument %s is a %s, not a string", expr, s.origin, s.kind)
		case s.encoded == nil:
			a.problem(state, "%s: nothing says %s holds JSON", expr, s.origin)
		default:
			return s.encoded
		}
		return anyShape
	}
	a.problem(state, "intrinsic %s is not modelled by this test", m[1])
	return anyShape
}

// splitArgs splits intrinsic arguments at top-level commas (not inside quotes or calls).
func splitArgs(s string) []string {
	var args []string
	depth, quoted, start := 0, false, 0
	for i, r := range s {
		switch {
		case r == '\'' && (i == 0 || s[i-1] != '\\'):
			quoted = !quoted
		case quoted:
		case r == '(':
			depth++
		case r == ')':
			depth--
		case r == ',' && depth == 0:
			args = append(args, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if rest := strings.TrimSpace(s[start:]); rest != "" {
		args = append(args, rest)
	}
	return args
}

// fits checks that a value sent to a function decodes into the function's input type: every
// field it has is a field of the type, with a matching JSON type.
func (a *analyzer) fits(state string, v, target *shape, where string) {
	switch {
	case v.kind == kindAny, target.kind == kindAny, v.kind == kindNull:
		return
	case v.kind != target.kind:
		a.problem(state, "%s is %s, a %s, but %s is a %s", where, v.origin, v.kind, target.origin, target.kind)
		return
	case v.kind != kindObject || target.open:
		return
	}
	for _, k := range sortedKeys(v.fields) {
		tf, ok := target.fields[k]
		if !ok {
			a.problem(state, "%s.%s: %s has no JSON field %q", where, k, target.origin, k)
			continue
		}
		a.fits(state, v.fields[k].s, tf.s, where+"."+k)
	}
}

type tri int

const (
	no tri = iota
	maybe
	yes
)

// Comparison operators of Choice rules, by the JSON type they compare.
var comparators = map[string]string{
	"StringEquals": kindString, "StringLessThan": kindString, "StringGreaterThan": kindString,
	"StringLessThanEquals": kindString, "StringGreaterThanEquals": kindString, "StringMatches": kindString,
	"NumericEquals": kindNumber, "NumericLessThan": kindNumber, "NumericGreaterThan": kindNumber,
	"NumericLessThanEquals": kindNumber, "NumericGreaterThanEquals": kindNumber,
	"BooleanEquals": kindBoolean,
}

// rule evaluates a Choice rule: whether it matches, as far as the shape tells.
func (a *analyzer) rule(state string, r map[string]any, in *shape) tri {
	combine := func(subs []any, all bool) tri {
		res := yes
		if !all {
			res = no
		}
		for _, x := range subs {
			sub, _ := x.(map[string]any)
			t := a.rule(state, sub, in)
			switch {
			case all && t < res, !all && t > res:
				res = t
			}
		}
		return res
	}
	if subs, ok := r["And"].([]any); ok {
		return combine(subs, true)
	}
	if subs, ok := r["Or"].([]any); ok {
		return combine(subs, false)
	}
	if sub, ok := r["Not"].(map[string]any); ok {
		return yes - a.rule(state, sub, in)
	}
	variable, _ := r["Variable"].(string)
	var op string
	for k := range r {
		if k != "Variable" && k != "Next" && k != "Comment" {
			op = k
		}
	}
	kind, ok := comparators[op]
	if variable == "" || !ok {
		a.problem(state, "choice rule %v is not modelled by this test", r)
		return maybe
	}
	s, ok := a.read(state, in, variable)
	if !ok || s.kind == kindAny {
		return maybe
	}
	if s.kind != kind {
		a.problem(state, "%s %s: %s is %s, a %s (the rule never matches)", variable, op, s.origin, s.kind, kind)
		return no
	}
	if s.literal == nil || op == "StringMatches" {
		return maybe
	}
	if compare(op, s.literal, r[op]) {
		return yes
	}
	return no
}

// compare evaluates a comparison of two known values.
func compare(op string, got, want any) bool {
	switch g := got.(type) {
	case string:
		w, _ := want.(string)
		switch op {
		case "StringEquals":
			return g == w
		case "StringLessThan":
			return g < w
		case "StringGreaterThan":
			return g > w
		case "StringLessThanEquals":
			return g <= w
		case "StringGreaterThanEquals":
			return g >= w
		}
	case float64:
		w, _ := want.(float64)
		switch op {
		case "NumericEquals":
			return g == w
		case "NumericLessThan":
			return g < w
		case "NumericGreaterThan":
			return g > w
		case "NumericLessThanEquals":
			return g <= w
		case "NumericGreaterThanEquals":
			return g >= w
		}
	case bool:
		w, _ := want.(bool)
		return op == "BooleanEquals" && g == w
	}
	return false
}
