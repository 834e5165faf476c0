# One image for every service: `factory run <service>` (k8s/base/factory/deployments.yaml).
#   docker build -t ghcr.io/jetsource/factory:0.1.0 .
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p factory \
 && cp target/release/factory /factory

# glibc, CA certificates, no shell, uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /factory /usr/local/bin/factory
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/factory"]
CMD ["--help"]
