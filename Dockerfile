# syntax=docker/dockerfile:1
# athena-connect (and the standalone athena-sim) in one image: build with the Rust toolchain, run on debian-slim
# as non-root (uid 10001), no shell tools beyond the base image.
#   docker build -t athena-connect:local .
#   docker run --rm athena-connect:local --help            # the connector CLI (default entrypoint)
#   docker run --rm -v $PWD/deploy/athena-connect.example.toml:/etc/athena-connect/config.toml:ro \
#     -e ATHENA_CONNECT_ADMIN_TOKEN=... athena-connect:local run --config /etc/athena-connect/config.toml
#   docker run --rm athena-connect:local sim --listen 0.0.0.0:8089   # the simulator
# The builder and runtime share a Debian release so the dynamically linked OpenSSL matches.

FROM rust:1.95-slim-bookworm AS builder
# librdkafka is compiled from source by rdkafka-sys (configure + make), linked to the system OpenSSL and zlib.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io downloads and the target dir between builds; the binaries are copied out
# because the target cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p athena-connect -p athena-sim \
    && mkdir -p /out \
    && cp target/release/athena-connect target/release/athena-sim /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin athena
COPY --from=builder /out/athena-connect /out/athena-sim /usr/local/bin/
USER 10001:10001
# 9400 admin API (health, readiness, /metrics, /connectors), 8088 FHIR push receiver, 8089 simulator.
EXPOSE 9400 8088 8089
# `run` stops every connector cleanly on SIGTERM within shutdown_timeout (25 s in the example config): give
# the container a longer grace period than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["athena-connect"]
CMD ["--help"]
