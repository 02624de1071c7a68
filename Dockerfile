# streamscore container image: a build stage with the Rust toolchain, a small runtime stage.
#   docker build -t streamscore .
#   docker run --rm -p 8080:8080 streamscore run --config /etc/streamscore/streamscore.toml
# The shipped model is embedded in the binary and also installed as a file
# (/usr/share/streamscore/models/sentiment-en.model) for `--model` and uploads.

FROM rust:1.89-bookworm AS build
# librdkafka (bundled by the rdkafka crate) builds with the C toolchain and links OpenSSL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY models ./models
COPY samples ./samples
COPY config ./config
COPY openapi.json ./
RUN cargo build --release --locked --bin streamscore \
 && strip target/release/streamscore

FROM debian:bookworm-slim AS runtime
# curl serves the HEALTHCHECK; ca-certificates and libssl3 serve SASL_SSL brokers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/streamscore --shell /usr/sbin/nologin streamscore \
 && mkdir -p /var/lib/streamscore /etc/streamscore \
 && chown streamscore /var/lib/streamscore
COPY --from=build /src/target/release/streamscore /usr/local/bin/streamscore
COPY models/sentiment-en.model /usr/share/streamscore/models/sentiment-en.model
COPY samples/tweets.jsonl /usr/share/streamscore/samples/tweets.jsonl
COPY config/default.toml /usr/share/streamscore/default.toml
USER streamscore
WORKDIR /var/lib/streamscore
ENV STREAMSCORE__STATE__DIR=/var/lib/streamscore \
    STREAMSCORE__HTTP__LISTEN=0.0.0.0:8080 \
    STREAMSCORE__CONTROL__SOCKET=/var/lib/streamscore/streamscore.sock
EXPOSE 8080
VOLUME ["/var/lib/streamscore"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8080/health/live"]
ENTRYPOINT ["streamscore"]
CMD ["run"]
