# syntax=docker/dockerfile:1.7
# re_dms in a container: `make build-docker` (docker build -t re_dms .).
# Run: docker run -v re_dms_wal:/var/lib/re_dms -v /etc/re_dms:/etc/re_dms:ro -p 9187:9187 re_dms
# (the config's wal.directory must be /var/lib/re_dms/wal, [metrics] listen 0.0.0.0:9187).

# Builder: the Rust toolchain the project is built and tested with (1.95; rust-version in
# Cargo.toml is the minimum). The registry and target directory are BuildKit cache mounts, so a
# rebuild after a source change compiles re_dms only, not its dependencies.
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other member (the Redshift stand-in) must be there for cargo to read it.
COPY tests/redshift-sim ./tests/redshift-sim
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin re_dms \
 && cp target/release/re_dms /usr/local/bin/re_dms

# Runtime: slim Debian with the CA roots (TLS to Redshift, S3 and the source verify against the
# system roots), a non-root user, the WAL on a volume.
FROM debian:bookworm-slim
# ca-certificates is not pinned: its version must follow Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/re_dms --shell /usr/sbin/nologin re_dms \
 && mkdir -p /var/lib/re_dms /etc/re_dms \
 && chown re_dms:re_dms /var/lib/re_dms
COPY --from=builder /usr/local/bin/re_dms /usr/local/bin/re_dms
# Build smoke step: the binary runs on this image.
RUN ["/usr/local/bin/re_dms", "--version"]
USER 10001:10001
VOLUME ["/var/lib/re_dms"]
EXPOSE 9187
# SIGTERM drains (20 s grace): give `docker stop` more than that (docker stop -t 60).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/re_dms"]
CMD ["--config", "/etc/re_dms/re_dms.toml"]
