#!/usr/bin/env bash
# Real faults on the running compose stack (make stack-up first; make stack-faults): each starts a
# forced training of the default deployment on the process worker, causes the fault while it
# trains, lets the run (or its re-run) finish, and checks the registry through MLflow's client:
# no MLflow run left RUNNING, at most one version per training run, the champion a version
# whose decision says promoted. One line per fault with its time; exit 1 if any fails.
#   MLflow restarted     docker restart of the tracking server while the run registers its model
#   PostgreSQL restarted docker restart of the database MLflow and Prefect use, 30 s into the run
#   worker killed        SIGKILL of the worker container mid-training, then the worker back and
#                        the deployment run again: it resumes from the last checkpoint
#   retrain healed       a retrain on changed settings, its worker container SIGKILLed after a
#                        checkpoint and brought back; nobody re-runs it: the server's automations
#                        mark the silent run Crashed and run the retrain again, which resumes
#                        (heal.max_reruns: a third crash within the hour is not re-run)
# FAULTS="heal worker" runs only the ones named (the names are in FAULT_TABLE below).
set -uo pipefail
: "${STACK:?run through make stack-faults}"
fails=0
check() {  # check NAME COMMAND...: runs it, prints ok/FAIL with the seconds it took
  local name=$1; shift; local t0=$SECONDS out
  if out=$("$@" 2>&1); then printf 'ok    %-24s %4ds  %s\n' "$name" $((SECONDS - t0)) "$(tail -1 <<<"$out")"
  else printf 'FAIL  %-24s %4ds  %s\n' "$name" $((SECONDS - t0)) "$(tail -4 <<<"$out" | tr '\n' ' ')"; fails=$((fails + 1)); fi
}
run_deployment() {  # run_deployment NAME [ARGS...]: starts a flow run of the deployment; prints its id
  $STACK exec -T worker sh -c 'cd /work && exec prefect deployment run "$@"' _ "$@" | sed -n 's/.*UUID: \([0-9a-f-]\{36\}\).*/\1/p'
}
start_run() { run_deployment training-pipeline/default --param force=true; }  # a forced training
final_state() {  # final_state ID: waits (15 min at most) for the flow run to end; prints its state
  $STACK exec -T worker python - "$1" <<'PY'
import sys, time
from prefect import get_client
with get_client(sync_client=True) as c:
    deadline = time.monotonic() + 900
    while True:
        state = c.read_flow_run(sys.argv[1]).state
        if state.is_final() or time.monotonic() > deadline:
            print(state.type.value, state.name, (state.message or "")[:160]); break
        time.sleep(3)
PY
}
registry_consistent() {
  $STACK exec -T worker python - <<'PY'
from collections import Counter
from mlflow import MlflowClient
import json
c = MlflowClient()
exp = c.get_experiment_by_name("s2s-default")
running = c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
assert not running, f"{len(running)} MLflow run(s) left RUNNING: {[r.info.run_id for r in running]}"
versions = c.search_model_versions("name='s2s-default'")
half = [v.version for v in versions if v.status != "READY"]
assert not half, f"versions not READY (half-written): {half}"
twice = [run for run, n in Counter(v.run_id for v in versions).items() if n > 1]
assert not twice, f"runs registered twice: {twice}"
champion = c.get_model_version_by_alias("s2s-default", "champion")
decision = champion.tags.get("promotion.decision") or json.loads(champion.tags.get("promotion", "{}")).get("decision")
assert decision in ("promoted", "forced", "approved", "rollback", None), decision
print(f"{len(versions)} versions, all READY, one per training run; champion v{champion.version}; no run left RUNNING")
PY
}
versions() { $STACK exec -T worker python -c 'from mlflow import MlflowClient; print(len(MlflowClient().search_model_versions("name=\x27s2s-default\x27")))'; }

task_running() {  # task_running ID TASK: waits (10 min at most) until the flow run's TASK runs
  $STACK exec -T worker python - "$1" "$2" <<'PY'
import sys, time
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
with get_client(sync_client=True) as c:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        runs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[sys.argv[1]])))
        if any(r.name.startswith(sys.argv[2]) and r.state and r.state.is_running() for r in runs):
            print(f"{sys.argv[2]} running"); break
        time.sleep(0.3)
PY
}
restarted() {  # restarted SERVICE [TASK]: the run survives the service's restart while TASK runs (else 30 s in)
  local id before state
  before=$(versions); id=$(start_run); [ -n "$id" ] || { echo "no flow run started"; return 1; }
  if [ -n "${2:-}" ]; then task_running "$id" "$2"; else sleep 30; fi
  $STACK restart "$1" >/dev/null 2>&1
  state=$(final_state "$id"); echo "flow run: $state"
  registry_consistent || return 1
  case "$state" in
    COMPLETED*) [ "$(versions)" -eq $((before + 1)) ] || { echo "expected one new version"; return 1; } ;;
    *) echo "ended $state: the fault was reported, not hidden"; [ "$(versions)" -le $((before + 1)) ] ;;
  esac
  local when=${2:+during $2}
  echo "$1 restarted ${when:-mid-run}: $state; $(registry_consistent | tail -1)"
}
killed_run_resumed() {  # the latest version: the killed run's MLflow run, taken over from its checkpoint
  $STACK exec -T worker python - "$1" <<'PY'
import sys
from mlflow import MlflowClient
from prefect import get_client
c = MlflowClient()
v = max(c.search_model_versions("name='s2s-default'"), key=lambda v: int(v.version))
tags = c.get_run(v.run_id).data.tags
flow_runs = tags.get("prefect_flow_run_ids", "").split(",")
assert "resumed_from" in tags, f"v{v.version} did not resume: {sorted(tags)}"
assert sys.argv[1] in flow_runs and len(flow_runs) == 2, flow_runs
with get_client(sync_client=True) as p:
    killed = p.read_flow_run(sys.argv[1]).state.name
print(f"v{v.version} resumed from {tags['resumed_from']} in the killed run's MLflow run; the killed flow run is {killed}")
PY
}
kill_worker_after_checkpoint() {  # kill_worker_after_checkpoint ID: SIGKILL the worker container once
  # a checkpoint newer than now is complete, then bring the worker back; none within 5 minutes:
  # nothing is killed, the flow run ID is cancelled (so it trains into no later fault) and it fails
  local since end container up; since=$(date +%s); end=$((SECONDS + 300))
  while [ $SECONDS -lt $end ]; do
    if $STACK exec -T worker sh -c "find /work/artifacts/checkpoints -name trainer_state.json -newermt @$since 2>/dev/null | grep -q ."; then
      container=$($STACK ps -q worker)
      [ -n "$container" ] && docker kill --signal KILL "$container" >/dev/null || { echo "the worker container could not be killed"; return 1; }
      up=$($STACK up -d --wait worker 2>&1) || { echo "the worker did not come back healthy: $(tail -2 <<<"$up" | tr '\n' ' ')"; return 1; }
      return 0
    fi
    sleep 2
  done
  if $STACK exec -T worker prefect flow-run cancel "$1" >/dev/null 2>&1; then
    echo "no checkpoint within 5 minutes: nothing killed, flow run $1 cancelled"
  else echo "no checkpoint within 5 minutes: nothing killed; cancelling flow run $1 failed, cancel it by hand"; fi
  return 1
}
worker_killed() {
  local id state again
  id=$(start_run); [ -n "$id" ] || { echo "no flow run started"; return 1; }
  kill_worker_after_checkpoint "$id" || return 1
  again=$(run_deployment training-pipeline/default)
  state=$(final_state "$again"); echo "re-run: $state"
  [[ "$state" == COMPLETED* ]] || return 1
  registry_consistent || return 1
  echo "worker SIGKILLed after a checkpoint; $(killed_run_resumed "$id" | tail -1)"
}
train_seed() {  # train_seed [N]: prints the worker project's train.seed; with N, sets it first
  $STACK exec -T worker python - "$@" <<'PY'
import re, sys
from pathlib import Path
p = Path("/work/params.yaml"); text = p.read_text()
block = re.search(r"^train:\n(?:(?:[ #].*)?\n)*?  seed: *(\d+)", text, re.M)  # train.seed, not ingest's
assert block, "no train.seed in the worker's params.yaml"
if len(sys.argv) > 1:
    p.write_text(text[: block.start(1)] + sys.argv[1] + text[block.end(1) :])
print(sys.argv[1] if len(sys.argv) > 1 else block.group(1))
PY
}
retrain_healed() {
  local before
  # a setting the registry has never seen (train.seed), so the retrain trains instead of skipping;
  # the project's own seed is put back afterwards
  before=$(train_seed) || return 1
  train_seed $(( $(date +%s) % 1000000 + 1000 )) >/dev/null || return 1
  healed_retrain; local rc=$?
  train_seed "$before" >/dev/null || { echo "could not put train.seed back to $before in the worker's params.yaml"; return 1; }
  return $rc
}
healed_retrain() {
  local id rerun
  id=$(run_deployment retrain/default); [ -n "$id" ] || { echo "no retrain started"; return 1; }
  kill_worker_after_checkpoint "$id" || return 1
  # no hand on it from here: the automations crash the silent run and start the re-run
  rerun=$($STACK exec -T worker python - "$id" <<'PY'
import sys, time
from prefect import get_client
from prefect.automations import Automation
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from flows.deploy import rerun_automation
# a flow run an automation starts carries "automation <id>, action <i>, invocation <id>" as its key
healer = f"automation {Automation.read(name=rerun_automation('default')).id},"
with get_client(sync_client=True) as c:
    deployment = c.read_deployment_by_name("retrain/default")
    deadline, killed = time.monotonic() + 900, sys.argv[1]
    while time.monotonic() < deadline:
        run = c.read_flow_run(killed)
        runs = c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
        healed = [r for r in runs if (r.idempotency_key or "").startswith(healer) and r.created > run.created]
        done = [r for r in healed if r.state and r.state.is_final()]
        if run.state.type.value == "CRASHED" and done:
            first = min(done, key=lambda r: r.created)
            print(f"the killed run CRASHED ({run.state.message}); the healing automation's re-run {first.name}: {first.state.type.value}")
            break
        time.sleep(3)
    else:
        print(f"no re-run by the healing automation within 15 minutes; the killed run is {run.state.type.value}")
PY
)
  echo "$rerun"
  [[ "$rerun" == *"CRASHED ("*"the healing automation's re-run "*": COMPLETED" ]] || return 1
  registry_consistent || return 1
  echo "retrain's worker SIGKILLed; $rerun; $(killed_run_resumed "$id" | tail -1)"
}
# the faults, in the order they run: name (for FAULTS), the line's label, the command
FAULT_TABLE=(
  "mlflow|MLflow restarted|restarted mlflow register"
  "postgres|PostgreSQL restarted|restarted postgres"
  "worker|worker killed|worker_killed"
  "heal|retrain healed|retrain_healed"
)
names=$(for row in "${FAULT_TABLE[@]}"; do printf '%s ' "${row%%|*}"; done)
selected=${FAULTS:-}
set -f  # the names are words, never file patterns
for f in $selected; do  # a misspelt name would run nothing and pass
  [[ " $names" == *" $f "* ]] || { echo "FAULTS: unknown fault '$f' (known: $names)"; exit 2; }
done
ran=0
for row in "${FAULT_TABLE[@]}"; do
  IFS='|' read -r name label command <<<"$row"
  if [ -z "${selected//[[:space:]]/}" ] || [[ " $selected " == *" $name "* ]]; then
    # shellcheck disable=SC2086 # the command and its arguments, split on purpose
    check "$label" $command; ran=$((ran + 1))
  fi
done
[ "$ran" -gt 0 ] || { echo "stack-faults: no fault ran"; exit 2; }
[ "$fails" = 0 ] && echo "stack-faults: all passed" || { echo "stack-faults: $fails failed"; exit 1; }
