package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
)

// scenario is one load scenario: each goroutine gets a caller from newCaller.
type scenario struct {
	name, baseline string
	// crypto names the raw measurement (see rawCrypto) whose cost bounds the
	// scenario together with the baseline's transport cost; empty: none.
	crypto    string
	newCaller func() caller
	setup     func() error // run once before the scenario, untimed
}

// The baselines are the transports' floors: calls that do no work and are not
// audited (health checks are probes, not API calls). Beside each, a public call
// that does no work either but is audited like every API call, and over REST
// goes through the gateway: the difference is what the audit (and the gateway)
// cost.
const (
	grpcBaseline = "grpc health check (baseline, not audited)"
	grpcAudited  = "grpc GetJwks (audited, no work)"
	restBaseline = "rest /healthz (baseline, not audited)"
	restAudited  = "rest GetJwks (audited, through the gateway)"
)

// Policy fixtures: the policy key is bound to this network and country, which the
// harness's country database maps the client address to.
const (
	policyCIDR    = "203.0.113.0/24"
	policyClient  = "203.0.113.7"
	policyCountry = "DE"
)

// fixtures are the keys and clients the scenarios use.
type fixtures struct {
	srv        *server
	conn       *grpc.ClientConn
	http       *http.Client
	keys       keywardv1.KeyServiceClient
	tokens     keywardv1.TokenServiceClient
	admin      context.Context // the bootstrap admin key
	plain      string          // secret of a key with a permission and no policy
	policy     string          // secret of a key bound to a network and a country
	client     context.Context // calls authenticated with the plain key
	verifier   string          // secret of the resource server calling VerifyKey
	verifierMD context.Context
	// issued holds a token per algorithm, issued while that algorithm signed.
	issued map[string]string
}

func newFixtures(srv *server, conn *grpc.ClientConn) (*fixtures, error) {
	f := &fixtures{srv: srv, conn: conn, keys: keywardv1.NewKeyServiceClient(conn), tokens: keywardv1.NewTokenServiceClient(conn),
		http:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}},
		admin:  metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+srv.adminKey),
		issued: map[string]string{}}
	create := func(req *keywardv1.CreateKeyRequest) (string, error) {
		req.Owner, req.Environment = "bench", keywardv1.Environment_ENVIRONMENT_LIVE
		k, err := f.keys.CreateKey(f.admin, req)
		return k.GetSecret(), err
	}
	var err error
	if f.plain, err = create(&keywardv1.CreateKeyRequest{Name: "plain", Permissions: []string{"orders"}}); err != nil {
		return nil, err
	}
	if f.policy, err = create(&keywardv1.CreateKeyRequest{Name: "policy", Permissions: []string{"orders"},
		AllowedCidrs: []string{policyCIDR}, AllowedCountries: []string{policyCountry}}); err != nil {
		return nil, err
	}
	if f.verifier, err = create(&keywardv1.CreateKeyRequest{Name: "resource server",
		Permissions: []string{"keyward.keys:verify", "keyward.client-ip:assert", "keyward.tokens:validate", "keyward.tokens:consume"}}); err != nil {
		return nil, err
	}
	f.client = metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+f.plain)
	f.verifierMD = metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+f.verifier)
	return f, nil
}

// rest returns a caller of a REST route that expects 200.
func (f *fixtures) rest(method, path string, body []byte, auth string) caller {
	url := "http://" + f.srv.httpAddr + path
	return func() error {
		req, err := http.NewRequest(method, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := f.http.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
}

// verifyKey returns a gRPC VerifyKey caller that expects a valid verdict.
func (f *fixtures) verifyKey(ctx context.Context, req *keywardv1.VerifyKeyRequest) caller {
	return func() error {
		v, err := f.keys.VerifyKey(ctx, req)
		if err == nil && !v.GetValid() {
			err = fmt.Errorf("not valid: %s", v.GetMessage())
		}
		return err
	}
}

// transportScenarios are the baselines and scenario 1, VerifyKey on a cache hit.
func (f *fixtures) transportScenarios() []scenario {
	health := grpc_health_v1.NewHealthClient(f.conn)
	policyReq := &keywardv1.VerifyKeyRequest{Secret: f.policy, RequiredPermission: "orders/1234:refund", ClientIp: policyClient}
	policyBody := fmt.Sprintf(`{"secret":%q,"required_permission":"orders/1234:refund","client_ip":%q}`, f.policy, policyClient)
	return []scenario{
		{name: grpcBaseline, newCaller: shared(func() error {
			_, err := health.Check(context.Background(), &grpc_health_v1.HealthCheckRequest{})
			return err
		})},
		{name: grpcAudited, baseline: grpcBaseline, newCaller: shared(func() error {
			_, err := f.tokens.GetJwks(context.Background(), &keywardv1.GetJwksRequest{})
			return err
		})},
		{name: "grpc VerifyKey, cache hit", baseline: grpcBaseline, crypto: "sha256",
			newCaller: shared(f.verifyKey(f.verifierMD, &keywardv1.VerifyKeyRequest{Secret: f.plain}))},
		{name: "grpc VerifyKey + permission, CIDR, country", baseline: grpcBaseline, crypto: "sha256",
			newCaller: shared(f.verifyKey(f.verifierMD, policyReq))},
		{name: restBaseline, newCaller: shared(f.rest(http.MethodGet, "/healthz", nil, ""))},
		{name: restAudited, baseline: restBaseline, newCaller: shared(f.rest(http.MethodGet, "/.well-known/jwks.json", nil, ""))},
		{name: "rest VerifyKey, cache hit", baseline: restBaseline, crypto: "sha256",
			newCaller: shared(f.rest(http.MethodPost, "/v1/keys:verify", []byte(fmt.Sprintf(`{"secret":%q}`, f.plain)), f.verifier))},
		{name: "rest VerifyKey + permission, CIDR, country", baseline: restBaseline, crypto: "sha256",
			newCaller: shared(f.rest(http.MethodPost, "/v1/keys:verify", []byte(policyBody), f.verifier))},
	}
}

var algorithms = []keywardv1.SigningAlgorithm{keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_HS256, keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_RS256,
	keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_ES256, keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_EDDSA}

// jwtName is the JWT "alg" of a signing algorithm.
func jwtName(alg keywardv1.SigningAlgorithm) string {
	if alg == keywardv1.SigningAlgorithm_SIGNING_ALGORITHM_EDDSA {
		return "EdDSA"
	}
	return strings.TrimPrefix(alg.String(), "SIGNING_ALGORITHM_")
}

// validateToken returns a ValidateToken caller for the token issued with alg.
func (f *fixtures) validateToken(alg string) caller {
	return func() error {
		v, err := f.tokens.ValidateToken(f.verifierMD, &keywardv1.ValidateTokenRequest{Token: f.issued[alg], Audience: "orders-api",
			RequiredPermission: "orders/1:refund"})
		if err == nil && !v.GetValid() {
			err = fmt.Errorf("not valid: %s", v.GetMessage())
		}
		return err
	}
}

// tokenScenarios are scenario 2: IssueToken and ValidateToken per algorithm, over
// gRPC and REST. The setup of each gRPC IssueToken scenario makes its algorithm
// the signing one.
func (f *fixtures) tokenScenarios() []scenario {
	var out []scenario
	for _, alg := range algorithms {
		name := jwtName(alg)
		rotate := func() error {
			if _, err := f.tokens.RotateSigningKey(f.admin, &keywardv1.RotateSigningKeyRequest{Algorithm: alg}); err != nil {
				return err
			}
			t, err := f.tokens.IssueToken(f.client, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}})
			if err == nil {
				f.issued[name] = t.GetAccessToken()
			}
			return err
		}
		out = append(out,
			scenario{name: "grpc IssueToken " + name, baseline: grpcBaseline, crypto: "sign " + name, setup: rotate,
				newCaller: shared(func() error {
					_, err := f.tokens.IssueToken(f.client, &keywardv1.IssueTokenRequest{Audience: []string{"orders-api"}})
					return err
				})},
			scenario{name: "grpc ValidateToken " + name, baseline: grpcBaseline, crypto: "parse " + name,
				newCaller: shared(f.validateToken(name))},
			// The same calls over REST, with the same signing key: what a peer's HTTP
			// token and introspection endpoints compare with.
			scenario{name: "rest IssueToken " + name, baseline: restBaseline, crypto: "sign " + name,
				newCaller: shared(f.rest(http.MethodPost, "/v1/tokens", []byte(`{"audience":["orders-api"]}`), f.plain))},
			scenario{name: "rest ValidateToken " + name, baseline: restBaseline, crypto: "parse " + name,
				newCaller: func() caller { return f.restValidateToken(name) }})
	}
	return out
}

// restValidateToken returns a REST ValidateToken caller for the token issued with
// alg (read when the caller is made, after the scenario's setup issued it) that
// expects a valid verdict.
func (f *fixtures) restValidateToken(alg string) caller {
	body := []byte(fmt.Sprintf(`{"token":%q,"audience":"orders-api","required_permission":"orders/1:refund"}`, f.issued[alg]))
	url := "http://" + f.srv.httpAddr + "/v1/tokens:validate"
	return func() error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+f.verifier)
		resp, err := f.http.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var v struct {
			Valid   bool   `json:"valid"`
			Message string `json:"message"`
		}
		if resp.StatusCode != http.StatusOK {
			_, _ = io.Copy(io.Discard, resp.Body)
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			return err
		}
		if !v.Valid {
			return fmt.Errorf("not valid: %s", v.Message)
		}
		return nil
	}
}

// writeScenarios are scenario 3: refresh-token rotation, temporary-token use and
// key creation, each a write through the store.
func (f *fixtures) writeScenarios() []scenario {
	var created int
	return []scenario{
		{name: "grpc RefreshToken", baseline: grpcBaseline, newCaller: func() caller {
			var refresh string
			return func() error {
				if refresh == "" {
					t, err := f.tokens.IssueToken(f.client, &keywardv1.IssueTokenRequest{IncludeRefreshToken: true})
					if err != nil {
						return err
					}
					refresh = t.GetRefreshToken()
				}
				t, err := f.tokens.RefreshToken(context.Background(), &keywardv1.RefreshTokenRequest{RefreshToken: refresh})
				refresh = t.GetRefreshToken() // on an error: "", and the next call starts a new chain
				return err
			}
		}},
		{name: "grpc ConsumeTemporaryToken", baseline: grpcBaseline, newCaller: func() caller {
			var token string
			return func() error {
				if token == "" { // a new 100-use token every 100 uses, issued inside the measured call
					t, err := f.tokens.IssueTemporaryToken(f.client, &keywardv1.IssueTemporaryTokenRequest{Operation: "orders:refund",
						Ttl: durationpb.New(3600e9), MaxUses: 100})
					if err != nil {
						return err
					}
					token = t.GetToken()
				}
				v, err := f.tokens.ConsumeTemporaryToken(f.verifierMD, &keywardv1.ConsumeTemporaryTokenRequest{Token: token, Operation: "orders:refund"})
				if err != nil {
					token = ""
					return err
				}
				if !v.GetValid() {
					token = ""
					return fmt.Errorf("not valid: %s", v.GetMessage())
				}
				if v.GetRemainingUses() == 0 {
					token = ""
				}
				return nil
			}
		}},
		{name: "grpc CreateKey", baseline: grpcBaseline, newCaller: func() caller {
			created++
			prefix := fmt.Sprintf("load-%d-", created)
			n := 0
			return func() error {
				n++
				_, err := f.keys.CreateKey(f.admin, &keywardv1.CreateKeyRequest{Name: fmt.Sprint(prefix, n), Owner: "bench",
					Environment: keywardv1.Environment_ENVIRONMENT_LIVE, Permissions: []string{"orders:read"}})
				return err
			}
		}},
	}
}

// reconnect dials the server again after a restart (it serves on new ports).
func (f *fixtures) reconnect() error {
	conn, err := grpc.NewClient(f.srv.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	_ = f.conn.Close()
	f.conn, f.keys, f.tokens = conn, keywardv1.NewKeyServiceClient(conn), keywardv1.NewTokenServiceClient(conn)
	return nil
}
