package contract

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestBatchSchedule checks the schedule of the batch runs: EventBridge Scheduler in Warsaw
// time, expression and state from parameters, the batch state machine as its target with the
// NIP as input, and a role that may start that state machine and do nothing else.
func TestBatchSchedule(t *testing.T) {
	tpl := repoTemplate(t)
	smID, _ := stateMachineID(t, tpl, "batch.asl.json")
	resources, _ := tpl["Resources"].(map[string]any)
	var schedules []string
	for _, id := range sortedKeys(resources) {
		if get(resources[id], "Type") == "AWS::Scheduler::Schedule" {
			schedules = append(schedules, id)
		}
	}
	if len(schedules) != 1 {
		t.Fatalf("schedules %q, want one", schedules)
	}
	p := get(resources[schedules[0]], "Properties")
	if tz := get(p, "ScheduleExpressionTimezone"); tz != "Europe/Warsaw" {
		t.Errorf("ScheduleExpressionTimezone %v, want Europe/Warsaw", tz)
	}
	for _, prop := range []string{"ScheduleExpression", "State"} {
		ref, ok := get(p, prop).(cfnTag)
		if !ok || ref.Tag != "!Ref" || get(tpl, "Parameters", ref.Value) == nil {
			t.Errorf("%s is %v, want !Ref to a parameter", prop, get(p, prop))
		}
	}
	if ref, _ := get(p, "State").(cfnTag); ref.Value != "" {
		allowed, _ := get(tpl, "Parameters", ref.Value, "AllowedValues").([]any)
		if !slices.Equal(allowed, []any{"ENABLED", "DISABLED"}) {
			t.Errorf("parameter %s allows %v, want ENABLED and DISABLED", ref.Value, allowed)
		}
	}
	if arn, _ := get(p, "Target", "Arn").(cfnTag); arn.Tag != "!Ref" || arn.Value != smID {
		t.Errorf("target %v, want !Ref %s", get(p, "Target", "Arn"), smID)
	}
	if in, _ := get(p, "Target", "Input").(cfnTag); in.Tag != "!Sub" || in.Value != `{"nip":"${Nip}"}` {
		t.Errorf("target input %v, want !Sub {\"nip\":\"${Nip}\"} (flow.BatchInput)", get(p, "Target", "Input"))
	}
	roleID, ok := getAttArn(get(p, "Target", "RoleArn"))
	if !ok {
		t.Fatalf("target role %v, want !GetAtt <Role>.Arn", get(p, "Target", "RoleArn"))
	}
	role := get(resources[roleID], "Properties")
	trust, _ := json.Marshal(get(role, "AssumeRolePolicyDocument"))
	if !strings.Contains(string(trust), `"scheduler.amazonaws.com"`) || strings.Count(string(trust), `"Service"`) != 1 {
		t.Errorf("role %s trusts %s, want EventBridge Scheduler alone", roleID, trust)
	}
	if get(role, "ManagedPolicyArns") != nil {
		t.Errorf("role %s has managed policies", roleID)
	}
	var grants []string
	policies, _ := get(role, "Policies").([]any)
	for _, pol := range policies {
		stmts, _ := get(pol, "PolicyDocument", "Statement").([]any)
		for _, s := range stmts {
			grants = append(grants, fmt.Sprintf("%v %v %v", get(s, "Effect"), get(s, "Action"), get(s, "Resource")))
		}
	}
	if want := []string{fmt.Sprintf("Allow states:StartExecution {!Ref %s}", smID)}; !slices.Equal(grants, want) {
		t.Errorf("role %s grants %q, want %q", roleID, grants, want)
	}
}

// TestBatchFunctionListsOnlyItsPrefix checks that the batch function may list the bucket only
// under the batch prefix.
func TestBatchFunctionListsOnlyItsPrefix(t *testing.T) {
	tpl := repoTemplate(t)
	policies, _ := get(tpl, "Resources", "BatchFunction", "Properties", "Policies").([]any)
	found := 0
	for _, pol := range policies {
		stmts, _ := get(pol, "Statement").([]any)
		for _, s := range stmts {
			actions := fmt.Sprint(get(s, "Action"))
			if !strings.Contains(actions, "s3:List") {
				continue
			}
			found++
			cond, _ := get(s, "Condition", "StringLike", "s3:prefix").(cfnTag)
			if cond.Tag != "!Sub" || cond.Value != "${BatchPrefix}*" {
				t.Errorf("%s allowed without the condition s3:prefix = ${BatchPrefix}*: %v", actions, get(s, "Condition"))
			}
		}
	}
	if found != 1 {
		t.Errorf("%d list statements, want the one ListBucketVersions", found)
	}
}
