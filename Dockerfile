# Two stages: build with the Rust toolchain, run from a distroless image as a non-root user.
# scripts/docker-context.sh (run by scripts/test.sh) compiles exactly what this file copies, so
# the build context cannot drift from what the build needs.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
# Every workspace member's manifest must be there for cargo to build even the server.
COPY tools ./tools
RUN cargo build --release --locked --bin certgate
# The working directory of the final image, owned by its non-root user (the default config
# writes the registry and the CA under it).
RUN mkdir -p /out/var/lib/certgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/certgate /usr/local/bin/certgate
COPY --from=build --chown=nonroot:nonroot /out/var/lib/certgate /var/lib/certgate
# Mount the config (and the certificate files it names) at /etc/certgate.
WORKDIR /var/lib/certgate
USER nonroot:nonroot
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/certgate"]
CMD ["serve", "--config", "/etc/certgate/certgate.toml"]
