# Terrane's image for those who build with a container engine; without one,
# `bash scripts/image.sh` writes the same image as an archive. Static binaries
# on an empty base: /terrane (server, agent, ctl) and /terrane-cni, which the
# agent's DaemonSet copies to the host's CNI directory.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ ./cmd/terrane ./cmd/terrane-cni

FROM scratch
COPY --from=build /out/terrane /out/terrane-cni /
ENTRYPOINT ["/terrane"]
