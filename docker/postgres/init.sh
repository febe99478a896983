#!/bin/sh
# First start only: the databases of Prefect and of MLflow's users next to MLflow's own.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname mlflow <<SQL
CREATE DATABASE prefect;
CREATE DATABASE mlflow_auth;
SQL
