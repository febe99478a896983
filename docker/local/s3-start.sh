#!/bin/sh
# weed server with its S3 gateway on :9000; the credentials come from MINIO_ROOT_USER and
# MINIO_ROOT_PASSWORD (written to a 0600 file, never to the log).
set -eu
: "${MINIO_ROOT_USER:?set MINIO_ROOT_USER}" "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD}"
umask 077
conf=$(mktemp /tmp/s3-XXXXXX.json)
python3 - "$conf" <<'PY'
import json, os, sys
identity = {"name": "stack", "credentials": [{"accessKey": os.environ["MINIO_ROOT_USER"],
            "secretKey": os.environ["MINIO_ROOT_PASSWORD"]}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
json.dump({"identities": [identity]}, open(sys.argv[1], "w"))
PY
exec weed server -dir=/data -ip=127.0.0.1 -ip.bind=0.0.0.0 -master.volumeSizeLimitMB=64 -volume.max=16 \
    -s3 -s3.port=9000 -s3.config="$conf"
