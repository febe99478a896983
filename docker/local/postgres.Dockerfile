# PostgreSQL 15 from Debian's packages, for machines that reach no public image registry
# (docker/compose.local.yaml). It takes the official image's variables (POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB) and runs /docker-entrypoint-initdb.d/*.sh on the first start.
ARG BASE=s2s-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY docker/local/postgres-start.sh /usr/local/bin/postgres-start
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
ENTRYPOINT ["postgres-start"]
