#!/bin/sh
# Refuse to start the stack with a placeholder or a well-known default as a credential.
# Run by the compose service `check-env` (every other service waits for it to succeed) and by
# hand: `env $(grep -v '^#' docker/.env | xargs) docker/check-env.sh`.
# A value is refused when it is empty, contains "change-me"/"changeme", equals one of the values
# docker/.env.example ships, or is a known default (MLflow's password1234, MinIO's minioadmin, ...).
set -u
status=0
refuse() { echo "check-env: $1 $2; set a real secret in docker/.env" >&2; status=2; }
for var in POSTGRES_PASSWORD MINIO_ROOT_PASSWORD MLFLOW_TRACKING_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY \
           PREFECT_SERVER_API_AUTH_STRING; do
  eval "value=\${$var:-}"
  secret=${value#*:}   # PREFECT_SERVER_API_AUTH_STRING is user:password; the password is the secret
  lower=$(printf '%s' "$secret" | tr '[:upper:]' '[:lower:]')
  if [ -z "$secret" ]; then refuse "$var" "is not set"; continue; fi
  case "$lower" in
    *change-me*|*changeme*|*change_me*) refuse "$var" "still holds the .env.example placeholder"; continue ;;
  esac
  case "$lower" in
    password1234|password|admin|minioadmin|postgres|mlflow|prefect|secret|s2s|root|12345678|123456789)
      refuse "$var" "is a well-known default password"; continue ;;
  esac
  if [ ${#secret} -lt 8 ]; then refuse "$var" "is shorter than 8 characters"; fi
done
[ "$status" = 0 ] && echo "check-env: credentials set"
exit "$status"
