# batchd container image: build on Debian 12, run on Debian 12 slim.
FROM debian:bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config \
      libmicrohttpd-dev libjansson-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY scripts ./scripts
COPY service ./service
COPY api ./api
COPY workers ./workers
RUN mkdir -p build && touch build/.deps-ok && make build/batchd

FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="batchd" \
      org.opencontainers.image.description="HTTP batch processing on pre-forked, model-loaded workers" \
      org.opencontainers.image.licenses="MIT"
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmicrohttpd12 libjansson4 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/batchd --create-home batchd
COPY --from=build /src/build/batchd /usr/local/bin/batchd
USER batchd
ENV BATCHD_LISTEN=0.0.0.0:8080 BATCHD_DATA_DIR=/var/lib/batchd
VOLUME ["/var/lib/batchd"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/batchd"]
