# homeostat's container image: built with cargo in a Rust image, run from distroless as non-root.
#   docker build -t homeostat:0.1.0 .
# The build stage keeps cargo's registry and target directory in BuildKit caches, so a rebuild
# after a source change recompiles only the workspace's own crates.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The whole workspace: the binary links every crate under crates/, and cargo reads bench/ and
# the [[test]] targets' paths while loading the manifests, though it builds neither.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package homeostat --bin homeostat \
    && cp target/release/homeostat /usr/local/bin/homeostat

# distroless/cc: glibc and libgcc for the Rust binary (SQLite and mimalloc are linked in), no
# shell, no package manager. Its `nonroot` user is uid 65532, which the manifests run as. Note:
# `exec` steps have no shell or tools here; Kubernetes, HTTP and notify actions need none.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/homeostat /usr/local/bin/homeostat
USER 65532:65532
# In Kubernetes the config is mounted at /etc/homeostat and the store's volume at
# /var/lib/homeostat: a relative store path is relative to the config file, so the config names
# the volume (`store: {path: /var/lib/homeostat/homeostat.db}`).
WORKDIR /home/nonroot
EXPOSE 9393
ENTRYPOINT ["/usr/local/bin/homeostat"]
CMD ["serve", "--config", "/etc/homeostat"]
