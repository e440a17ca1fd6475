# batchd container image.
#
# Two stages: the binary is built on debian:bookworm with the -dev packages,
# and runs on debian:bookworm-slim with only the runtime libraries
# (libmicrohttpd12, which brings GnuTLS for --tls-cert, libjansson4, and
# libsqlite3-0 for the job store, libpq5 for a PostgreSQL store (--store),
# libopenblas0-serial for the mlp model):
# no compiler, no curl, no shell tools beyond the base image's.
#
#   docker build -t batchd .
#   docker run -p 8080:8080 -e BATCHD_API_TOKENS=... -v batchd-data:/var/lib/batchd batchd
#
# batchd's supervisor runs as PID 1: it takes SIGTERM (docker stop), drains
# running tasks for --grace seconds (default 10), stops its children and
# exits 0; it reaps every child. `make image-test` builds this file
# unchanged with buildah and checks all of that with podman.

FROM debian:bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config \
      libmicrohttpd-dev libjansson-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev libpq-dev \
      libopenblas-serial-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole tree (less .dockerignore): the Makefile may include or generate
# from any of it (the dashboard's files, tests/fuzz/fuzz.mk).
COPY . ./
# The packages are installed above: tell the Makefile not to check them.
RUN mkdir -p build && touch build/.deps-ok \
 && make build/batchd \
 && strip --strip-unneeded build/batchd \
 && ./build/batchd --version

FROM debian:bookworm-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="batchd" \
      org.opencontainers.image.description="HTTP batch processing on pre-forked, model-loaded worker processes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.documentation="README.md (Deployment)" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmicrohttpd12 libjansson4 libsqlite3-0 \
      libpq5 libcurl4 libssl3 ca-certificates \
      libopenblas0-serial \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && groupadd --system --gid 10001 batchd \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/batchd --create-home \
      --shell /usr/sbin/nologin batchd \
 && chmod 0750 /var/lib/batchd
COPY --from=build /src/build/batchd /usr/local/bin/batchd
# The coprocess hosts (docs/coprocess.md), where batchd looks for them from
# /usr/local/bin: ../share/batchd/hosts/. The interpreters are not in this
# image: a Python model's image adds them (FROM batchd, then apt-get install
# python3 python3-numpy, as root).
COPY --from=build /src/build/hosts/ /usr/local/share/batchd/hosts/
# A numeric user, so that an orchestrator can check runAsNonRoot.
USER 10001:10001
WORKDIR /var/lib/batchd
# Listen on every address of the container (batchd's own default is
# 127.0.0.1); without BATCHD_API_TOKENS it says loudly that auth is off.
ENV BATCHD_LISTEN=0.0.0.0:8080 \
    BATCHD_DATA_DIR=/var/lib/batchd
VOLUME ["/var/lib/batchd"]
EXPOSE 8080
STOPSIGNAL SIGTERM
# The same options and variables as the server: it finds --listen itself.
# /healthz answers as soon as the api process listens, before the workers
# are ready (that is /readyz), so no --start-period is needed.
HEALTHCHECK --interval=10s --timeout=5s --retries=3 \
  CMD ["/usr/local/bin/batchd", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/batchd"]
