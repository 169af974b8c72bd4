# syntax=docker/dockerfile:1
# athena-connect and athena-sim in one image: build with the Rust toolchain, run on debian-slim as non-root.
#   docker build -t athena-connect:local .
#   docker run --rm athena-connect:local --help            # the connector CLI (default entrypoint)
#   docker run --rm --entrypoint athena-sim athena-connect:local
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
# Admin port: health and Prometheus /metrics.
EXPOSE 9400
ENTRYPOINT ["athena-connect"]
CMD ["--help"]
