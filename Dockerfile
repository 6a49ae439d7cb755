# Airbyte destination image for destination-delta-lake.
#   docker build -t ridelake/destination-delta-lake:0.1.0 .
# Airbyte requires: an absolute ENTRYPOINT equal to $AIRBYTE_ENTRYPOINT, user `airbyte`, /airbyte.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked -p destination-delta-lake --bin destination-delta-lake

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 airbyte \
 && mkdir -p /airbyte /local \
 && chown airbyte:airbyte /airbyte /local
COPY --from=build /src/target/dist/destination-delta-lake /airbyte/destination-delta-lake
ENV AIRBYTE_ENTRYPOINT="/airbyte/destination-delta-lake"
ENTRYPOINT ["/airbyte/destination-delta-lake"]
LABEL io.airbyte.name="ridelake/destination-delta-lake" \
      io.airbyte.version="0.1.0"
USER airbyte
WORKDIR /airbyte
