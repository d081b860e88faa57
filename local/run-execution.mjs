// Runs executions of an Amazon States Language (JSONPath) definition locally with the
// aws-local-stepfunctions JS API, calling the Task states' Lambda functions through the AWS SDK
// (point AWS_ENDPOINT_URL_LAMBDA at the local Lambda router of internal/localrun).
//
// One execution:   node run-execution.mjs [JOB.json]      (the job on stdin when no file is given)
//                  prints exactly one JSON line (the result) on stdout.
// Many, one process: node run-execution.mjs --serve
//                  reads one job per line on stdin, each with an "id"; writes one result line per
//                  job, carrying the same "id", in completion order; exits when stdin closes and
//                  every job has finished.
//
// Job:    {definitionPath, substitutions: {ChallengeFunctionArn: "arn:aws:lambda:...", ...}, input,
//          waitTimeOverrideMs?, retryIntervalOverrideMs?, timeoutMs?, lambdaEndpoint?,
//          stateMachineName?, executionName? ($$.Execution.Name; a random UUID if absent), id?}
// Result: {status: "SUCCEEDED"|"FAILED"|"TIMED_OUT"|"ABORTED"|"ERROR", output, error, cause,
//          stateTransitions, states: [names entered, in order], retries, caught, waits, durationMs}
//
// Where the library differs from AWS Step Functions, this runner does what AWS does:
// - A Lambda function error reaches Retry/Catch as {Error: errorType, Cause: <the function's
//   error payload as a JSON string>}; a payload without errorType is "Lambda.Unknown" with AWS's
//   cause text. (The library's own Lambda client would give Cause "errorType: errorMessage".)
// - Lambda service and transport failures are named Lambda.<Exception>,
//   Lambda.AWSLambdaException (unmodelled service error) or Lambda.SdkClientException.
// - With waitTimeOverrideMs the library skips evaluating SecondsPath/TimestampPath; this runner
//   evaluates them anyway and fails the execution with States.Runtime when AWS would.
// status "ERROR" means the job itself could not be run (bad job, invalid definition); the exit
// status is then 2 in single-execution mode.
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { randomUUID } from 'node:crypto';
import { StateMachine, ExecutionError, ExecutionTimeoutError, ExecutionAbortedError } from 'aws-local-stepfunctions';
import { LambdaClient, InvokeCommand } from '@aws-sdk/client-lambda';
import { JSONPath } from 'jsonpath-plus';

// Only result lines may go to stdout.
console.log = (...args) => console.error(...args);
console.info = console.log;

const REGION = process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'eu-central-1';
const ACCOUNT = '123456789012';
const LAMBDA_ARN = /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:([A-Za-z0-9_-]+)(?::([A-Za-z0-9$_-]+))?$/;
const MODELLED_LAMBDA_ERRORS = new Set([
  'ServiceException', 'TooManyRequestsException', 'ResourceNotFoundException',
  'ResourceConflictException', 'ResourceNotReadyException', 'InvalidRequestContentException',
  'InvalidParameterValueException', 'RequestTooLargeException', 'UnsupportedMediaTypeException',
  'InvalidRuntimeException', 'EC2ThrottledException', 'EC2UnexpectedException',
  'ENILimitReachedException', 'KMSAccessDeniedException', 'KMSDisabledException',
  'KMSNotFoundException', 'SnapStartException', 'SnapStartTimeoutException',
  'RecursiveInvocationException',
]);

// TaskFailure is a failed Task as AWS Step Functions reports it: name is the error name matched
// by ErrorEquals, message is the Cause.
class TaskFailure extends Error {
  constructor(name, cause) {
    super(cause);
    this.name = name;
  }
}

class JobError extends Error {}

const lambdaClients = new Map();

function lambdaClient(endpoint) {
  const key = endpoint || '';
  let c = lambdaClients.get(key);
  if (!c) {
    // No SDK retries: Step Functions surfaces service errors to Retry as Lambda.* errors.
    c = new LambdaClient({ region: REGION, maxAttempts: 1, ...(endpoint ? { endpoint } : {}) });
    lambdaClients.set(key, c);
  }
  return c;
}

async function invokeLambda(client, functionName, qualifier, payload) {
  let out;
  try {
    out = await client.send(new InvokeCommand({
      FunctionName: functionName,
      Qualifier: qualifier,
      InvocationType: 'RequestResponse',
      Payload: new TextEncoder().encode(JSON.stringify(payload)),
    }));
  } catch (err) {
    if (err && err.$metadata && err.$metadata.httpStatusCode) {
      const name = MODELLED_LAMBDA_ERRORS.has(err.name) ? err.name : 'AWSLambdaException';
      throw new TaskFailure(`Lambda.${name}`, `${err.message || err.name} (Service: Lambda, Status Code: ${err.$metadata.httpStatusCode})`);
    }
    throw new TaskFailure('Lambda.SdkClientException', `Unable to execute HTTP request: ${err && err.message ? err.message : String(err)}`);
  }
  const text = out.Payload ? new TextDecoder().decode(out.Payload) : '';
  if (out.FunctionError) {
    let parsed;
    try { parsed = JSON.parse(text); } catch { parsed = undefined; }
    if (parsed && typeof parsed === 'object' && typeof parsed.errorType === 'string' && parsed.errorType !== '') {
      throw new TaskFailure(parsed.errorType, text);
    }
    throw new TaskFailure('Lambda.Unknown', `The cause could not be determined because Lambda did not return an error type. Returned payload: ${text}`);
  }
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new TaskFailure('States.Runtime', `The Lambda function returned a payload that is not JSON: ${text.slice(0, 200)}`);
  }
}

// walk visits every state of a definition, including Parallel branches and Map processors.
function walk(def, fn) {
  for (const [name, st] of Object.entries(def.States || {})) {
    fn(name, st);
    for (const b of st.Branches || []) walk(b, fn);
    if (st.ItemProcessor) walk(st.ItemProcessor, fn);
    if (st.Iterator) walk(st.Iterator, fn);
  }
}

function substitute(text, subs) {
  const missing = new Set();
  const out = text.replace(/\$\{([A-Za-z0-9_.:-]+)\}/g, (m, key) => {
    if (Object.prototype.hasOwnProperty.call(subs, key)) return String(subs[key]);
    missing.add(key);
    return m;
  });
  if (missing.size > 0) throw new JobError(`definition substitutions missing: ${[...missing].sort().join(', ')}`);
  return out;
}

const machines = new Map();

async function prepare(job) {
  if (!job || typeof job !== 'object') throw new JobError('job must be a JSON object');
  if (typeof job.definitionPath !== 'string' || job.definitionPath === '') throw new JobError('job.definitionPath is required');
  const subs = job.substitutions || {};
  const key = JSON.stringify([job.definitionPath, subs, job.lambdaEndpoint || '', job.stateMachineName || '']);
  let m = machines.get(key);
  if (m) return m;
  const text = await readFile(job.definitionPath, 'utf8');
  let def;
  try {
    def = JSON.parse(substitute(text, subs));
  } catch (err) {
    if (err instanceof JobError) throw err;
    throw new JobError(`definition ${job.definitionPath}: ${err.message}`);
  }
  if (def.QueryLanguage && def.QueryLanguage !== 'JSONPath') {
    throw new JobError(`definition uses QueryLanguage ${def.QueryLanguage}; only JSONPath runs locally`);
  }
  const client = lambdaClient(job.lambdaEndpoint);
  const tasks = {};
  const waits = {};
  const retryable = [];
  walk(def, (name, st) => {
    if (st.QueryLanguage && st.QueryLanguage !== 'JSONPath') throw new JobError(`state ${name} uses QueryLanguage ${st.QueryLanguage}; only JSONPath runs locally`);
    if (st.Type === 'Task') {
      const match = LAMBDA_ARN.exec(st.Resource || '');
      if (!match) throw new JobError(`state ${name}: unsupported Task resource ${JSON.stringify(st.Resource)} (only Lambda function ARNs run locally)`);
      const [, fn, qualifier] = match;
      tasks[name] = (input) => invokeLambda(client, fn, qualifier, input);
    }
    if (st.Type === 'Wait') waits[name] = st;
    if (st.Retry) retryable.push(name);
  });
  let machine;
  try {
    machine = new StateMachine(def, { validationOptions: { checkArn: true, checkPaths: true } });
  } catch (err) {
    throw new JobError(err.message);
  }
  m = { machine, tasks, waits, retryable, name: typeof job.stateMachineName === 'string' && job.stateMachineName ? job.stateMachineName : 'local' };
  machines.set(key, m);
  return m;
}

// waitSeconds evaluates a Wait state's duration the way AWS does; it throws TaskFailure
// (States.Runtime) where AWS would fail the execution.
function waitSeconds(name, st, input) {
  if (typeof st.Seconds === 'number') return st.Seconds;
  const query = (p) => JSONPath({ path: p, json: input, wrap: false });
  if (st.SecondsPath) {
    const v = query(st.SecondsPath);
    if (v === undefined) throw new TaskFailure('States.Runtime', `An error occurred while executing the state '${name}'. The SecondsPath parameter does not reference a valid path: ${st.SecondsPath}`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new TaskFailure('States.Runtime', `An error occurred while executing the state '${name}'. The SecondsPath parameter references an invalid value: ${JSON.stringify(v)}`);
    return v;
  }
  const ts = st.Timestamp !== undefined ? st.Timestamp : st.TimestampPath ? query(st.TimestampPath) : undefined;
  if (st.TimestampPath && ts === undefined) throw new TaskFailure('States.Runtime', `An error occurred while executing the state '${name}'. The TimestampPath parameter does not reference a valid path: ${st.TimestampPath}`);
  const t = typeof ts === 'string' ? Date.parse(ts) : NaN;
  if (Number.isNaN(t)) throw new TaskFailure('States.Runtime', `An error occurred while executing the state '${name}'. The timestamp is not a valid ISO-8601 value: ${JSON.stringify(ts)}`);
  return Math.max(0, Math.round((t - Date.now()) / 1000));
}

function describe(err) {
  const cause = err && err.cause !== undefined ? err.cause : err && err.message;
  return { error: err && err.name ? String(err.name) : 'Error', cause: typeof cause === 'string' ? cause : JSON.stringify(cause) };
}

async function runJob(job) {
  const started = Date.now();
  const result = {
    status: 'ERROR', output: null, error: null, cause: null, stateTransitions: 0,
    states: [], retries: [], caught: [], waits: [], durationMs: 0,
  };
  try {
    const m = await prepare(job);
    const overrides = { taskResourceLocalHandlers: m.tasks };
    const waitOverride = job.waitTimeOverrideMs;
    if (waitOverride !== undefined && waitOverride !== null) {
      if (typeof waitOverride !== 'number' || waitOverride < 0) throw new JobError('waitTimeOverrideMs must be a number >= 0');
      // At least 1 ms: the library then sleeps on a timer, so the path check below (run from the
      // event log, a microtask later) always happens before the next state starts.
      overrides.waitTimeOverrides = Object.fromEntries(Object.keys(m.waits).map((n) => [n, Math.max(1, waitOverride)]));
    }
    if (job.retryIntervalOverrideMs !== undefined && job.retryIntervalOverrideMs !== null) {
      overrides.retryIntervalOverrides = Object.fromEntries(m.retryable.map((n) => [n, job.retryIntervalOverrideMs]));
    }
    const execName = typeof job.executionName === 'string' && job.executionName ? job.executionName : randomUUID();
    const smArn = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${m.name}`;
    const execution = m.machine.run(job.input === undefined ? {} : job.input, {
      overrides,
      context: {
        Execution: { Id: `arn:aws:states:${REGION}:${ACCOUNT}:execution:${m.name}:${execName}`, Name: execName, RoleArn: `arn:aws:iam::${ACCOUNT}:role/local` },
        StateMachine: { Id: smArn, Name: m.name },
      },
    });
    let runtimeFailure = null;
    let failedEvent = null;
    let timedOutByHarness = false;
    let timer;
    if (job.timeoutMs) {
      timer = setTimeout(() => { timedOutByHarness = true; execution.abort(); }, job.timeoutMs);
    }
    const collect = (async () => {
      for await (const ev of execution.eventLogs) {
        switch (ev.type) {
          case 'StateEntered': {
            result.stateTransitions++;
            result.states.push(ev.state.name);
            const st = m.waits[ev.state.name];
            if (st && !runtimeFailure) {
              try {
                result.waits.push({ state: ev.state.name, seconds: waitSeconds(ev.state.name, st, ev.state.input) });
              } catch (err) {
                runtimeFailure = describe(err);
                execution.abort();
              }
            }
            break;
          }
          case 'StateRetried':
            result.stateTransitions++;
            result.retries.push({ state: ev.state.name, attempt: ev.retry.attempt });
            break;
          case 'StateFailed':
            result.lastFailure = { state: ev.state.name, error: ev.Error, cause: typeof ev.Cause === 'string' ? ev.Cause : JSON.stringify(ev.Cause) };
            break;
          case 'StateCaught':
            result.caught.push({ state: ev.state.name, error: result.lastFailure ? result.lastFailure.error : null, next: ev.catch.catcher.Next });
            break;
          case 'ExecutionFailed':
            failedEvent = { error: ev.Error, cause: typeof ev.Cause === 'string' ? ev.Cause : JSON.stringify(ev.Cause) };
            break;
          default:
            break;
        }
      }
    })();
    try {
      result.output = await execution.result;
      result.status = 'SUCCEEDED';
    } catch (err) {
      if (err instanceof ExecutionAbortedError) {
        if (runtimeFailure) {
          result.status = 'FAILED';
          result.error = runtimeFailure.error;
          result.cause = runtimeFailure.cause;
        } else {
          result.status = 'ABORTED';
          result.error = 'ExecutionAborted';
          result.cause = timedOutByHarness ? `aborted by the local runner after ${job.timeoutMs} ms` : 'aborted';
        }
      } else if (err instanceof ExecutionTimeoutError) {
        result.status = 'TIMED_OUT';
        result.error = 'States.Timeout';
        result.cause = 'The execution exceeded the state machine TimeoutSeconds';
      } else if (err instanceof ExecutionError) {
        await collect;
        const d = failedEvent || describe(err.cause);
        result.status = 'FAILED';
        result.error = d.error;
        result.cause = d.cause;
      } else {
        throw err;
      }
    } finally {
      clearTimeout(timer);
    }
    await collect;
    delete result.lastFailure;
  } catch (err) {
    result.status = 'ERROR';
    result.error = err instanceof JobError ? 'JobError' : err && err.name ? err.name : 'Error';
    result.cause = err && err.message ? err.message : String(err);
    delete result.lastFailure;
  }
  result.durationMs = Date.now() - started;
  return result;
}

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

function parseJob(text) {
  try {
    return JSON.parse(text);
  } catch (err) {
    return { parseError: `job is not valid JSON: ${err.message}` };
  }
}

async function single(file) {
  const job = parseJob(file ? await readFile(file, 'utf8') : await readStdin());
  const res = job.parseError
    ? { status: 'ERROR', output: null, error: 'JobError', cause: job.parseError, stateTransitions: 0, states: [], retries: [], caught: [], waits: [], durationMs: 0 }
    : await runJob(job);
  process.stdout.write(JSON.stringify(res) + '\n');
  process.exitCode = res.status === 'ERROR' ? 2 : 0;
}

async function serve() {
  const inflight = new Set();
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (line.trim() === '') continue;
    const job = parseJob(line);
    const p = (async () => {
      const res = job.parseError
        ? { status: 'ERROR', error: 'JobError', cause: job.parseError }
        : await runJob(job);
      process.stdout.write(JSON.stringify({ id: job.id ?? null, ...res }) + '\n');
    })();
    inflight.add(p);
    p.finally(() => inflight.delete(p));
  }
  await Promise.all([...inflight]);
}

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

const args = process.argv.slice(2);
if (args[0] === '--serve') {
  await serve();
} else if (args.length <= 1) {
  await single(args[0]);
} else {
  console.error('usage: run-execution.mjs [JOB.json] | --serve');
  process.exitCode = 2;
}
// Idle keep-alive connections to the Lambda endpoint would keep Node running; every result is
// written (stdout writes to pipes and files are synchronous), so leave now.
process.exit();
