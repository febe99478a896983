#!/bin/sh
# Start `mlflow server` with basic-auth, configured only by the environment:
#   MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD   the admin account (required)
#   MLFLOW_AUTH_DATABASE_URI      where users and permissions live (e.g. the PostgreSQL below)
#   MLFLOW_FLASK_SERVER_SECRET_KEY  CSRF secret, the same on every replica (required)
#   MLFLOW_BACKEND_STORE_URI      runs and the registry (postgresql://...)
#   MLFLOW_ARTIFACTS_DESTINATION  where served artifacts go (s3://bucket/path or a folder)
# Extra arguments go to `mlflow server` (e.g. --host, --port, --workers).
# The public default admin password of older MLflow releases is refused here and by MLflow.
set -eu
: "${MLFLOW_AUTH_ADMIN_USERNAME:=admin}"
if [ -z "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]; then
  echo "mlflow-start: set MLFLOW_AUTH_ADMIN_PASSWORD (the admin password of the tracking server)" >&2; exit 2
fi
if [ "$MLFLOW_AUTH_ADMIN_PASSWORD" = "password1234" ]; then
  echo "mlflow-start: MLFLOW_AUTH_ADMIN_PASSWORD is MLflow's old public default; choose another" >&2; exit 2
fi
if [ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]; then
  echo "mlflow-start: set MLFLOW_FLASK_SERVER_SECRET_KEY (a random string, the same on every replica)" >&2; exit 2
fi
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql://user:password@host/db)}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (s3://bucket/prefix or a folder)}"
config="${MLFLOW_AUTH_CONFIG_PATH:-${TMPDIR:-/tmp}/mlflow-basic-auth.ini}"
umask 077
cat > "$config" <<INI
[mlflow]
default_permission = READ
database_uri = ${MLFLOW_AUTH_DATABASE_URI:-sqlite:///basic_auth.db}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="$config" MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD
exec mlflow server --app-name basic-auth \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" --serve-artifacts \
  "$@"
