# Build: docker build -t ses-relay .
# Run:   docker run -p 2525:2525 -p 127.0.0.1:9925:9925 -v /etc/ses-relay:/etc/ses-relay:ro ses-relay
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
# No .git in the build context: pass the commit for --version and ses_relay_build_info
# (docker build --build-arg SES_RELAY_GIT_COMMIT=$(git rev-parse --short HEAD) .).
ARG SES_RELAY_GIT_COMMIT=unknown
ENV SES_RELAY_GIT_COMMIT=$SES_RELAY_GIT_COMMIT
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY etc ./etc
# Compiled in: the man page (configuration.md) and GET /runbook (operations.md).
COPY docs ./docs
COPY benches ./benches
RUN cargo build --release --locked --bin ses-relay

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10025 --home /var/lib/ses-relay --shell /usr/sbin/nologin ses-relay \
    && mkdir -p /var/lib/ses-relay /etc/ses-relay && chown ses-relay: /var/lib/ses-relay
COPY --from=build /src/target/release/ses-relay /usr/local/bin/ses-relay
USER ses-relay
# SMTP, and the admin API (metrics, health, cutover): with admin.listen = "0.0.0.0:9925" in the
# container's config, admin.read-token-file is required (reads and /metrics need a bearer token,
# PUT the admin.token-file one); publish the port only on a management network.
EXPOSE 2525 9925
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/ses-relay", "healthcheck", "--config", "/etc/ses-relay/ses-relay.toml"]
ENTRYPOINT ["/usr/local/bin/ses-relay"]
CMD ["run", "--config", "/etc/ses-relay/ses-relay.toml"]
