# syntax=docker/dockerfile:1
#
# The Dragonfly scanning node as a container (docs/operations.md).
#
#   docker build -t dragonfly-client .                               # the node (last stage)
#   docker build --target fake-server -t dragonfly-fake-server .     # test-kit control server
#
# No secrets are baked in: pass DRAGONFLY_* settings at run time.

# ---- build: the same release build as the last step of .github/workflows/ci.yml
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry cargo build --release --locked -p dragonfly-client

# ---- the test kit's fake control server, for compose.yaml (reuses the build's dependencies)
FROM build AS fake-server-build
RUN --mount=type=cache,target=/usr/local/cargo/registry cargo build --release --locked -p dragonfly-testkit --bin dragonfly-fake-server

FROM debian:bookworm-slim AS fake-server
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin dragonfly \
    && mkdir -p /srv/packages
COPY --from=fake-server-build /src/target/release/dragonfly-fake-server /usr/local/bin/dragonfly-fake-server
# The bundled rules, served at GET /rules.
COPY crates/dragonfly-engine/rules /srv/rules
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["dragonfly-fake-server"]
CMD ["--listen", "0.0.0.0:8000", "--rules", "/srv/rules", "--packages", "/srv/packages"]

# ---- the node: slim Debian, CA certificates, one binary, a non-root user
FROM debian:bookworm-slim AS node
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/dragonfly \
        --shell /usr/sbin/nologin dragonfly \
    && install -d -o dragonfly -g dragonfly /var/cache/dragonfly
COPY --from=build /src/target/release/dragonfly-client /usr/local/bin/dragonfly-client
USER 10001:10001
# The node reads an optional Config.toml here; settings normally come from DRAGONFLY_* variables.
# /var/cache/dragonfly is writable for DRAGONFLY_RULES_CACHE_DIR (mount a volume there to keep it).
WORKDIR /var/lib/dragonfly
# Metrics and health endpoints; HEALTHCHECK and EXPOSE use this port.
ENV DRAGONFLY_METRICS_ADDR=0.0.0.0:9100
EXPOSE 9100
# No curl in the image: bash's /dev/tcp asks /healthz and wants a 200.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9100 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["dragonfly-client"]
CMD ["run"]
