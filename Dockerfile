# syntax=docker/dockerfile:1.7
#
# ferry's container image: a release build on Debian bookworm, copied into
# bookworm-slim and run as an unprivileged user.
#
#   docker build -t ferry:dev .
#   docker run --rm -p 8080:8080 ferry:dev            # embedded backend, data in /var/lib/ferry (no /demo: not loopback)
#   docker run --rm ferry:dev migrate                  # any subcommand: the entrypoint is `ferry`
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts.

# Keep equal to the channel in rust-toolchain.toml (scripts/ci/validate-deploy.sh checks it).
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# rdkafka builds its bundled librdkafka with configure/make (no cmake); ssl needs
# libssl-dev and compression needs zlib1g-dev. protox compiles proto/ in build.rs,
# so no protoc is needed.
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev
WORKDIR /src
# The toolchain comes from the image tag: rust-toolchain.toml is left out by
# .dockerignore so rustup does not download a second toolchain and components.
COPY . .
# The target dir is a cache mount, so the binary is copied out within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin ferry \
 && install -D -m 0755 target/release/ferry /out/ferry \
 && strip /out/ferry

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# libssl3 + zlib1g: what the binary links against dynamically (rdkafka's ssl and
# compression); ca-certificates: TLS to Kafka, ScyllaDB, upstreams and OTLP collectors.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ferry \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/ferry --no-create-home \
      --shell /usr/sbin/nologin ferry \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/ferry \
 && install -d -m 0755 /etc/ferry
COPY --from=builder /out/ferry /usr/local/bin/ferry

# Inside a container ferry must listen on every interface (its own default is
# 127.0.0.1:8080), and its embedded data (log, store, development secrets) lives in
# /var/lib/ferry: mount a volume there to keep it (compose and the chart do). Both can be overridden.
#
# Safe by default: on a non-loopback listener ferry never serves /demo or mints
# tokens (the binary enforces it, so every deployment gets it, not only this image).
# With no auth key configured the image starts without the demo, verifying tokens
# with a generated development secret nobody outside the container can read
# (`docker exec <container> ferry token alice` mints one); configure
# FERRY_AUTH__HS256_SECRET or a key file for real clients. It starts rather than
# refusing, so `docker run -p 8080:8080 ferry:dev` still works for a first look.
ENV FERRY_SERVER__LISTEN=0.0.0.0:8080 \
    FERRY_DATA_DIR=/var/lib/ferry
WORKDIR /var/lib/ferry
USER 10001:10001
# One port: /ws and / (WebSocket), /healthz, /readyz, /metrics and /api/v1 (internal).
EXPOSE 8080
# ferry handles SIGTERM itself (drain: close sockets with 1012, flush, commit,
# exit within session.shutdown_grace_secs), so it runs as PID 1 without an init.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["serve"]
