package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Micro is an in-process measurement made with testing.Benchmark.
type Micro struct {
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"ns_per_op"`
	AllocsPerOp int64   `json:"allocs_per_op"`
	BytesPerOp  int64   `json:"bytes_per_op"`
	// OpsPerSec is the throughput of the operation on all cores at once
	// (RunParallel), which is what the machine allows a server doing only that.
	OpsPerSec float64 `json:"ops_per_sec_all_cores,omitempty"`
	// Raw names the raw measurement Ratio divides by.
	Raw   string  `json:"raw,omitempty"`
	Ratio float64 `json:"ratio_to_raw,omitempty"`
}

// microTime is how long testing.Benchmark runs each measurement.
const microTime = "500ms"

var initTesting sync.Once

// measure benchmarks f on one core (ns/op, allocations) and, when parallel is
// set, on all cores at once (operations per second).
func measure(name string, parallel bool, f func() error) (Micro, error) {
	initTesting.Do(func() {
		testing.Init() // registers -test.benchtime, which testing.Benchmark reads
		_ = flag.Set("test.benchtime", microTime)
	})
	var failed error
	serial := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := f(); err != nil && failed == nil {
				failed = err
			}
		}
	})
	if failed != nil {
		return Micro{}, fmt.Errorf("%s: %w", name, failed)
	}
	m := Micro{Name: name, NsPerOp: float64(serial.T.Nanoseconds()) / float64(serial.N),
		AllocsPerOp: serial.AllocsPerOp(), BytesPerOp: serial.AllocedBytesPerOp()}
	if parallel {
		all := testing.Benchmark(func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = f()
				}
			})
		})
		m.OpsPerSec = float64(all.N) / all.T.Seconds()
	}
	return m, nil
}

// signingAlgs are Keyward's JWT algorithms, as golang-jwt names them.
var signingAlgs = []string{"HS256", "RS256", "ES256", "EdDSA"}

// rawCrypto measures what golang-jwt alone costs to sign and to parse-and-verify
// a token carrying claims (those of a token Keyward issued), per algorithm, with
// keys of the sizes Keyward uses (RSA 2048, P-256, Ed25519, 256-bit HMAC); and
// SHA-256 of an API key secret, the hash VerifyKey computes. Results are keyed
// "sign HS256", "parse ES256", "sha256".
func rawCrypto(claims jwt.MapClaims, secret string) (map[string]Micro, []Micro, error) {
	byName := map[string]Micro{}
	var list []Micro
	add := func(m Micro, err error) error {
		if err == nil {
			byName[m.Name] = m
			list = append(list, m)
		}
		return err
	}
	for _, alg := range signingAlgs {
		private, public, err := newKey(alg)
		if err != nil {
			return nil, nil, err
		}
		method := jwt.GetSigningMethod(alg)
		sign := func() (string, error) {
			t := jwt.NewWithClaims(method, claims)
			t.Header["kid"] = "raw"
			return t.SignedString(private)
		}
		token, err := sign()
		if err != nil {
			return nil, nil, fmt.Errorf("signing %s: %w", alg, err)
		}
		if err := add(measure("sign "+alg, true, func() error { _, err := sign(); return err })); err != nil {
			return nil, nil, err
		}
		parser := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithExpirationRequired())
		keyFunc := func(*jwt.Token) (any, error) { return public, nil }
		if err := add(measure("parse "+alg, true, func() error {
			_, err := parser.ParseWithClaims(token, &jwt.RegisteredClaims{}, keyFunc)
			return err
		})); err != nil {
			return nil, nil, err
		}
	}
	err := add(measure("sha256", true, func() error {
		sum := sha256.Sum256([]byte(secret))
		if sum[0] == 0 && sum[1] == 0 && sum[2] == 0 && sum[3] == 0 {
			return fmt.Errorf("improbable hash") // keeps the call from being optimised away
		}
		return nil
	}))
	return byName, list, err
}

func newKey(alg string) (private, public any, err error) {
	switch alg {
	case "HS256":
		k := make([]byte, 32)
		_, err = rand.Read(k)
		return k, k, err
	case "RS256":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, nil, err
		}
		return k, &k.PublicKey, nil
	case "ES256":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		return k, &k.PublicKey, nil
	case "EdDSA":
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, pub, err
	}
	return nil, nil, fmt.Errorf("unknown algorithm %s", alg)
}

// payload returns the claims of a JWT without verifying it.
func payload(token string) (jwt.MapClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var claims jwt.MapClaims
	return claims, json.Unmarshal(b, &claims)
}
