// Package server is Keyward's transport: the gRPC server, the REST gateway in front
// of it, and the concerns every call goes through, each in one place:
//
//   - interceptors.go: the fixed chain — recovery, request id, error mapping and
//     request log, authentication and authorization, protovalidate;
//   - permissions.go: the one table of the permission each RPC needs;
//   - errors.go: the one mapping from service and repository errors to status codes;
//   - gateway.go: the HTTP side (grpc-gateway, OpenAPI document, health);
//   - restinput.go: the REST input the gateway would pass on unchecked (path and
//     query parameters: valid UTF-8, known to the route; a body that is one JSON value);
//   - resterrors.go: the one JSON shape of every REST error, and the request limits;
//   - keys.go and its siblings: thin handlers converting wire types to domain types;
//   - metrics.go: request metrics, and /metrics on a listener of its own;
//   - server.go: New, from explicit dependencies (the services, logger, metrics
//     registry), parsed options (trusted proxies, TLS configuration, limits) and
//     listeners already bound; Start, Shutdown, readiness as /readyz and gRPC
//     health report it, and the profiler's listener.
//
// It is transport only: it opens no store, reads no configuration, master key or
// GeoIP database, and runs no background job. The program (internal/app) does,
// and hands the results to New.
//
// The gateway calls the services in process (inproc.go, inprocdirect.go): a
// unary call runs the same interceptor chain as a gRPC call, on the HTTP
// request's goroutine, and its answer is encoded by internal/pbjson, protojson's
// output at a fraction of its cost. What the gateway resolved of the HTTP
// request (client address, method, route, headers) reaches the services as a
// context value (resthttp.go's gatewayCall), never as metadata.
package server
