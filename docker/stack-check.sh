#!/usr/bin/env bash
# End to end on the running compose stack (make stack-up first): one line per check with its time;
# exit 1 if any fails. Needs STACK (the compose command, set by `make stack-check`) and the .env
# it reads. What it checks: services healthy; the S3 buckets through the S3 API; MLflow refuses a
# request without credentials and takes the right ones; the worker's project deploys; the default
# pipeline runs as a deployment on the worker; its version is in MLflow (PostgreSQL) with the
# champion alias; the same deployment on the docker pool runs in a fresh container and its artifacts are objects in the S3 bucket; a wrong tracking password is
# refused at once by name; no secret in any service's log.
set -uo pipefail
: "${STACK:?run through make stack-check}"
env_file=$(sed -n 's/.*--env-file \([^ ]*\).*/\1/p' <<<"$STACK")
set -a; . "$env_file"; set +a
fails=0
check() {  # check NAME COMMAND...: runs it, prints ok/FAIL with the seconds it took
  local name=$1; shift; local t0=$SECONDS out
  if out=$("$@" 2>&1); then printf 'ok    %-44s %4ds  %s\n' "$name" $((SECONDS - t0)) "$(tail -1 <<<"$out")"
  else printf 'FAIL  %-44s %4ds  %s\n' "$name" $((SECONDS - t0)) "$(tail -3 <<<"$out" | tr '\n' ' ')"; fails=$((fails + 1)); fi
}
healthy() { local bad; bad=$($STACK ps --format '{{.Service}} {{.Status}}' | grep -v healthy); [ -z "$bad" ] || { echo "$bad"; return 1; }; echo "all healthy"; }
buckets() { $STACK run --rm -T buckets | grep "'$MLFLOW_BUCKET'"; }
mlflow_auth() {
  local url="http://127.0.0.1:5000/api/2.0/mlflow/experiments/search?max_results=1" a b
  a=$(curl -s -o /dev/null -w '%{http_code}' "$url"); b=$(curl -s -o /dev/null -w '%{http_code}' -u "$MLFLOW_TRACKING_USERNAME:$MLFLOW_TRACKING_PASSWORD" "$url")
  echo "without credentials $a, with $b"; [ "$a" = 401 ] && [ "$b" = 200 ]
}
project() { $STACK exec -T worker sh -c '[ -f /work/params.yaml ] || s2s init /work >/dev/null; cd /work && s2s deploy >/dev/null && echo deployed'; }
pipeline() {
  $STACK exec -T worker sh -c 'cd /work && prefect deployment run training-pipeline/default --watch --watch-timeout 900' \
    | grep -E "finished in state|Completed" | tail -1 | grep -q Completed && echo "flow run Completed on the worker"
}
docker_pool() {  # the same deployment moved to the docker pool, forced to train: a container of its own
  $STACK exec -T worker sh -c 'cd /work && s2s deploy default --work-pool docker >/dev/null && prefect deployment run training-pipeline/default --param force=true --watch --watch-timeout 900' \
    | grep -E "finished in state|Completed" | tail -1 | grep -q Completed || { $STACK logs --tail 40 docker-worker; return 1; }
  local logs; logs=$($STACK logs --no-color docker-worker 2>&1)  # (grep -q on a pipe: pipefail would fail it)
  grep -q "Creating Docker container" <<<"$logs" || { echo "the docker worker started no container"; return 1; }
  $STACK exec -T worker sh -c 'cd /work && s2s deploy default >/dev/null'  # back on the process pool
  $STACK exec -T worker python -c 'from mlflow import MlflowClient; v = max(MlflowClient().search_model_versions("name=\x27s2s-default\x27"), key=lambda v: int(v.version)); print(f"flow run in a fresh container registered s2s-default v{v.version}")'
}
serving() {  # a serve container for the champion, asked from this host (127.0.0.1:5001)
  $STACK --profile serve up -d --wait serve >/dev/null 2>&1 || { $STACK --profile serve logs --tail 20 serve; return 1; }
  local answer
  answer=$(curl -s -D - 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \
    -d '{"inputs": ["Councillors in Lisbon approved 12 million euros for a tram line on Friday."]}')
  grep -q '"predictions": \["' <<<"$answer" && grep -qi "X-Model-Version" <<<"$answer" || { echo "$answer"; return 1; }
  echo "serve container answered: $(grep -i '^X-Model-Version' <<<"$answer" | tr -d '\r') $(tail -1 <<<"$answer" | cut -c1-80)"
}
registry() {
  $STACK exec -T worker python - <<'PY'
from mlflow import MlflowClient
c = MlflowClient()
v = c.get_model_version_by_alias("s2s-default", "champion")
print(f"s2s-default v{v.version} holds champion, source {v.source}")
PY
}
artifacts() {
  $STACK run --rm -T --entrypoint python3 buckets -c '
import os, boto3
s3 = boto3.client("s3", endpoint_url="http://minio:9000", region_name="us-east-1",
                  aws_access_key_id=os.environ["MINIO_ROOT_USER"], aws_secret_access_key=os.environ["MINIO_ROOT_PASSWORD"])
keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["MLFLOW_BUCKET"]) for o in p.get("Contents", [])]
assert any(k.endswith("model.safetensors") for k in keys), keys[:20]
print(len(keys), "objects in the artifact bucket, the model weights among them")'
}
wrong_credentials() {  # a clear refusal at once, the password nowhere in what it says
  local out
  out=$($STACK exec -T -e MLFLOW_TRACKING_PASSWORD=wrong-Pass-0000 worker sh -c 'cd /work && s2s compare' 2>&1) && return 1
  grep -q "refused the credentials (401" <<<"$out" && ! grep -q "wrong-Pass-0000" <<<"$out" && echo "refused: ${out:0:90}..."
}
no_secret_in_logs() {
  local logs; logs=$($STACK --profile serve logs --no-color 2>&1)
  for v in POSTGRES_PASSWORD MINIO_ROOT_PASSWORD MLFLOW_TRACKING_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY; do
    grep -qF -- "${!v}" <<<"$logs" && { echo "$v's value is in the logs"; return 1; }
  done
  grep -qF -- "${PREFECT_SERVER_API_AUTH_STRING#*:}" <<<"$logs" && { echo "the Prefect password is in the logs"; return 1; }
  echo "$(wc -l <<<"$logs") log lines, no secret value in them"
}
check "services healthy" healthy
check "buckets through the S3 API" buckets
check "MLflow basic-auth" mlflow_auth
check "project initialised and deployed on the worker" project
check "default pipeline as a deployment on the worker" pipeline
check "champion version in MLflow on PostgreSQL" registry
check "a serve container answers for the champion" serving
check "a flow run of the docker pool in its own container" docker_pool
check "model artifacts in the S3 bucket" artifacts
check "wrong tracking credentials refused" wrong_credentials
check "no secret in any service's log" no_secret_in_logs
[ "$fails" = 0 ] && echo "stack-check: all passed" || { echo "stack-check: $fails failed"; exit 1; }
