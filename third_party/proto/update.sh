#!/usr/bin/env bash
# Re-vendors the .proto files that Keyward's contracts import, from registry packages:
#   google/api/*.proto           npm package google-proto-files (Apache-2.0)
#   buf/validate/validate.proto  Go module github.com/bufbuild/protovalidate (Apache-2.0)
#   protoc-gen-openapiv2/options Go module github.com/grpc-ecosystem/grpc-gateway/v2 (BSD-3-Clause)
# Run from the repository root: third_party/proto/update.sh
set -euo pipefail
GOOGLE_PROTO_FILES=6.0.1
PROTOVALIDATE=v1.2.2
dest=third_party/proto
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "google-proto-files@$GOOGLE_PROTO_FILES" >/dev/null && tar xzf google-proto-files-*.tgz)
mkdir -p "$dest/google/api"
for f in annotations http field_behavior httpbody; do
  cp "$tmp/package/google/api/$f.proto" "$dest/google/api/"
done
cp "$tmp/package/LICENSE" "$dest/google/LICENSE"

pv=$(go mod download -json "github.com/bufbuild/protovalidate@$PROTOVALIDATE" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
mkdir -p "$dest/buf/validate"
cp "$pv/proto/protovalidate/buf/validate/validate.proto" "$dest/buf/validate/"
cp "$pv/LICENSE" "$dest/buf/LICENSE"

gw=$(go list -m -f '{{.Dir}}' github.com/grpc-ecosystem/grpc-gateway/v2)
mkdir -p "$dest/protoc-gen-openapiv2/options"
cp "$gw"/protoc-gen-openapiv2/options/{annotations,openapiv2}.proto "$dest/protoc-gen-openapiv2/options/"
cp "$gw/LICENSE" "$dest/protoc-gen-openapiv2/LICENSE"
chmod -R u+w "$dest"
