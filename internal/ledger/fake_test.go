package ledger

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// fakeDB is an in-memory DynamoDB table keyed by "pk" that evaluates the condition and update
// expressions the ledger writes (a subset of the grammar: attribute_exists, attribute_not_exists,
// =, <>, IN, AND, OR, NOT, parentheses; SET with if_not_exists and +; REMOVE), with DynamoDB's
// answers: ConditionalCheckFailedException and TransactionCanceledException with cancellation
// reasons and ALL_OLD items. The moto tests run the same scenarios against moto, which keeps
// this fake honest.
type fakeDB struct {
	mu    sync.Mutex
	items map[string]map[string]types.AttributeValue
	// beforeTransact, if set, runs (without the lock) before each TransactWriteItems; a non-nil
	// result is returned instead, e.g. a TransactionConflict cancellation.
	beforeTransact func(in *dynamodb.TransactWriteItemsInput) error
	calls          map[string]int
}

var _ API = (*fakeDB)(nil)

func newFakeDB() *fakeDB {
	return &fakeDB{items: map[string]map[string]types.AttributeValue{}, calls: map[string]int{}}
}

func (f *fakeDB) item(pk string) map[string]types.AttributeValue {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.items[pk])
}

func keyOf(key map[string]types.AttributeValue) string { return getS(key, attrPK) }

func (f *fakeDB) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["GetItem"]++
	return &dynamodb.GetItemOutput{Item: maps.Clone(f.items[keyOf(in.Key)])}, nil
}

func (f *fakeDB) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["UpdateItem"]++
	pk := keyOf(in.Key)
	old := f.items[pk]
	ev := &evaluator{names: in.ExpressionAttributeNames, values: in.ExpressionAttributeValues}
	ok, err := ev.condition(aws.ToString(in.ConditionExpression), old)
	if err != nil {
		return nil, err
	}
	if !ok {
		e := &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
		if in.ReturnValuesOnConditionCheckFailure == types.ReturnValuesOnConditionCheckFailureAllOld {
			e.Item = maps.Clone(old)
		}
		return nil, e
	}
	next := maps.Clone(old)
	if next == nil {
		next = maps.Clone(in.Key)
	}
	if err := ev.update(aws.ToString(in.UpdateExpression), next); err != nil {
		return nil, err
	}
	f.items[pk] = next
	out := &dynamodb.UpdateItemOutput{}
	if in.ReturnValues == types.ReturnValueAllNew {
		out.Attributes = maps.Clone(next)
	}
	return out, nil
}

func (f *fakeDB) TransactWriteItems(_ context.Context, in *dynamodb.TransactWriteItemsInput, _ ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if f.beforeTransact != nil {
		if err := f.beforeTransact(in); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["TransactWriteItems"]++
	reasons := make([]types.CancellationReason, len(in.TransactItems))
	failed := false
	for i, ti := range in.TransactItems {
		reasons[i] = types.CancellationReason{Code: aws.String("None")}
		var (
			pk     string
			cond   *string
			names  map[string]string
			values map[string]types.AttributeValue
			allOld bool
		)
		switch {
		case ti.Put != nil:
			pk, cond, names, values = keyOf(ti.Put.Item), ti.Put.ConditionExpression, ti.Put.ExpressionAttributeNames, ti.Put.ExpressionAttributeValues
			allOld = ti.Put.ReturnValuesOnConditionCheckFailure == types.ReturnValuesOnConditionCheckFailureAllOld
		case ti.ConditionCheck != nil:
			pk, cond, names, values = keyOf(ti.ConditionCheck.Key), ti.ConditionCheck.ConditionExpression, ti.ConditionCheck.ExpressionAttributeNames, ti.ConditionCheck.ExpressionAttributeValues
			allOld = ti.ConditionCheck.ReturnValuesOnConditionCheckFailure == types.ReturnValuesOnConditionCheckFailureAllOld
		default:
			return nil, fmt.Errorf("fake: transact item %d: only Put and ConditionCheck are modelled", i)
		}
		ev := &evaluator{names: names, values: values}
		ok, err := ev.condition(aws.ToString(cond), f.items[pk])
		if err != nil {
			return nil, err
		}
		if !ok {
			failed = true
			reasons[i] = types.CancellationReason{Code: aws.String("ConditionalCheckFailed"), Message: aws.String("The conditional request failed")}
			if allOld {
				reasons[i].Item = maps.Clone(f.items[pk])
			}
		}
	}
	if failed {
		return nil, &types.TransactionCanceledException{Message: aws.String("Transaction cancelled"), CancellationReasons: reasons}
	}
	for _, ti := range in.TransactItems {
		if ti.Put != nil {
			f.items[keyOf(ti.Put.Item)] = maps.Clone(ti.Put.Item)
		}
	}
	return &dynamodb.TransactWriteItemsOutput{}, nil
}

// evaluator evaluates expressions against one item.
type evaluator struct {
	names  map[string]string
	values map[string]types.AttributeValue
	toks   []string
	pos    int
	item   map[string]types.AttributeValue
}

func tokenize(s string) []string {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ':
			i++
		case strings.ContainsRune("(),=+", rune(c)):
			toks = append(toks, string(c))
			i++
		case c == '<' && i+1 < len(s) && s[i+1] == '>':
			toks = append(toks, "<>")
			i += 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" (),=+<", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks
}

func (e *evaluator) peek() string {
	if e.pos < len(e.toks) {
		return e.toks[e.pos]
	}
	return ""
}

func (e *evaluator) next() string {
	t := e.peek()
	e.pos++
	return t
}

func (e *evaluator) expect(t string) error {
	if got := e.next(); got != t {
		return fmt.Errorf("fake: expression %q: want %q, got %q", strings.Join(e.toks, " "), t, got)
	}
	return nil
}

func (e *evaluator) attr(tok string) (string, error) {
	if strings.HasPrefix(tok, "#") {
		n, ok := e.names[tok]
		if !ok {
			return "", fmt.Errorf("fake: undefined attribute name %s", tok)
		}
		return n, nil
	}
	return tok, nil
}

// operand evaluates a path or a value placeholder; nil if the attribute is absent.
func (e *evaluator) operand() (types.AttributeValue, error) {
	tok := e.next()
	if strings.HasPrefix(tok, ":") {
		v, ok := e.values[tok]
		if !ok {
			return nil, fmt.Errorf("fake: undefined value %s", tok)
		}
		return v, nil
	}
	if tok == "if_not_exists" {
		if err := e.expect("("); err != nil {
			return nil, err
		}
		name, err := e.attr(e.next())
		if err != nil {
			return nil, err
		}
		if err := e.expect(","); err != nil {
			return nil, err
		}
		dflt, err := e.operand()
		if err != nil {
			return nil, err
		}
		if err := e.expect(")"); err != nil {
			return nil, err
		}
		if v, ok := e.item[name]; ok {
			return v, nil
		}
		return dflt, nil
	}
	name, err := e.attr(tok)
	if err != nil {
		return nil, err
	}
	return e.item[name], nil
}

func (e *evaluator) condition(expr string, item map[string]types.AttributeValue) (bool, error) {
	if expr == "" {
		return true, nil
	}
	e.toks, e.pos, e.item = tokenize(expr), 0, item
	ok, err := e.or()
	if err == nil && e.pos != len(e.toks) {
		err = fmt.Errorf("fake: condition %q: trailing %q", expr, e.peek())
	}
	return ok, err
}

func (e *evaluator) or() (bool, error) {
	v, err := e.and()
	for err == nil && e.peek() == "OR" {
		e.next()
		var w bool
		w, err = e.and()
		v = v || w
	}
	return v, err
}

func (e *evaluator) and() (bool, error) {
	v, err := e.factor()
	for err == nil && e.peek() == "AND" {
		e.next()
		var w bool
		w, err = e.factor()
		v = v && w
	}
	return v, err
}

func (e *evaluator) factor() (bool, error) {
	switch tok := e.peek(); tok {
	case "NOT":
		e.next()
		v, err := e.factor()
		return !v, err
	case "(":
		e.next()
		v, err := e.or()
		if err != nil {
			return false, err
		}
		return v, e.expect(")")
	case "attribute_exists", "attribute_not_exists":
		e.next()
		if err := e.expect("("); err != nil {
			return false, err
		}
		name, err := e.attr(e.next())
		if err != nil {
			return false, err
		}
		if err := e.expect(")"); err != nil {
			return false, err
		}
		_, present := e.item[name]
		return present == (tok == "attribute_exists"), nil
	}
	left, err := e.operand()
	if err != nil {
		return false, err
	}
	switch op := e.next(); op {
	case "=", "<>":
		right, err := e.operand()
		if err != nil {
			return false, err
		}
		return equal(left, right) == (op == "="), nil
	case "IN":
		if err := e.expect("("); err != nil {
			return false, err
		}
		found := false
		for {
			v, err := e.operand()
			if err != nil {
				return false, err
			}
			found = found || equal(left, v)
			if t := e.next(); t == ")" {
				return found, nil
			} else if t != "," {
				return false, fmt.Errorf("fake: IN list: unexpected %q", t)
			}
		}
	default:
		return false, fmt.Errorf("fake: unsupported operator %q", op)
	}
}

func equal(a, b types.AttributeValue) bool {
	switch a := a.(type) {
	case *types.AttributeValueMemberS:
		b, ok := b.(*types.AttributeValueMemberS)
		return ok && a.Value == b.Value
	case *types.AttributeValueMemberN:
		b, ok := b.(*types.AttributeValueMemberN)
		return ok && a.Value == b.Value
	case *types.AttributeValueMemberBOOL:
		b, ok := b.(*types.AttributeValueMemberBOOL)
		return ok && a.Value == b.Value
	}
	return false
}

// update applies SET and REMOVE clauses to item. Every right-hand side is evaluated against the
// item as it was before the update, as DynamoDB does.
func (e *evaluator) update(expr string, item map[string]types.AttributeValue) error {
	e.toks, e.pos, e.item = tokenize(expr), 0, maps.Clone(item)
	for e.pos < len(e.toks) {
		switch clause := e.next(); clause {
		case "SET":
			for {
				name, err := e.attr(e.next())
				if err != nil {
					return err
				}
				if err := e.expect("="); err != nil {
					return err
				}
				v, err := e.operand()
				if err != nil {
					return err
				}
				if e.peek() == "+" {
					e.next()
					w, err := e.operand()
					if err != nil {
						return err
					}
					if v, err = add(v, w); err != nil {
						return err
					}
				}
				item[name] = v
				if e.peek() != "," {
					break
				}
				e.next()
			}
		case "REMOVE":
			for {
				name, err := e.attr(e.next())
				if err != nil {
					return err
				}
				delete(item, name)
				if e.peek() != "," {
					break
				}
				e.next()
			}
		default:
			return fmt.Errorf("fake: update %q: unexpected %q", expr, clause)
		}
	}
	return nil
}

func add(a, b types.AttributeValue) (types.AttributeValue, error) {
	x, ok1 := a.(*types.AttributeValueMemberN)
	y, ok2 := b.(*types.AttributeValueMemberN)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("fake: + needs two numbers")
	}
	m, err := strconv.ParseInt(x.Value, 10, 64)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(y.Value, 10, 64)
	if err != nil {
		return nil, err
	}
	return num(m + n), nil
}
