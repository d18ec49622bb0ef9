// Package geoiptest builds small MaxMind DB files for tests of code that uses
// package geoip, so that no test needs a real GeoLite2/GeoIP2 database.
package geoiptest

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// DatabaseType is the database type Write records in the file's metadata.
const DatabaseType = "GeoIP2-Country"

// Write builds a GeoIP2-Country-layout database that maps each network in
// countries (a CIDR such as "81.2.69.0/24" or "2001:db8:1::/48") to its ISO
// 3166-1 alpha-2 code, stored as {"country": {"iso_code": code}} like the
// MaxMind databases do. It writes the file under t.TempDir and returns its path;
// any failure fails the test.
//
// The tree is IPv6, with IPv4 networks inserted under ::/96, so both families
// resolve. Reserved networks (192.0.2.0/24, 10.0.0.0/8, 2001:db8::/32, ...) are
// allowed, so tests can use documentation and private ranges. Unlike MaxMind's
// own files, the database has no IPv4 aliases (::ffff:0:0/96, 2002::/16 and
// 2001::/32 are not linked to the IPv4 tree): an IPv4-mapped IPv6 address only
// resolves if the reader unmaps it, which is what a test of that wants to prove.
//
// Networks are inserted from the widest to the narrowest, so when they overlap
// the more specific one wins, whatever the map's iteration order.
func Write(t testing.TB, countries map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "GeoIP2-Country-Test.mmdb")
	if err := WriteFile(path, countries); err != nil {
		t.Fatalf("geoiptest: %v", err)
	}
	return path
}

// WriteFile is Write for callers outside a test, such as the load harness: it
// writes the database to path and returns what went wrong.
func WriteFile(path string, countries map[string]string) error {
	type entry struct {
		network *net.IPNet
		bits    int
		key     string
		code    string
	}
	entries := make([]entry, 0, len(countries))
	for cidr, code := range countries {
		_, network, err := net.ParseCIDR(cidr)
		if err != nil {
			return fmt.Errorf("network %q: %w", cidr, err)
		}
		ones, _ := network.Mask.Size()
		if len(network.Mask) == net.IPv4len {
			ones += 96 // its depth in the IPv6 tree, where the IPv4 tree is ::/96
		}
		entries = append(entries, entry{network: network, bits: ones, key: cidr, code: code})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.bits, b.bits), strings.Compare(a.key, b.key))
	})

	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            DatabaseType,
		Description:             map[string]string{"en": "Keyward test database"},
		Languages:               []string{"en"},
		IPVersion:               6,
		RecordSize:              24,
		IncludeReservedNetworks: true,
		DisableIPv4Aliasing:     true,
	})
	if err != nil {
		return fmt.Errorf("new tree: %w", err)
	}
	for _, e := range entries {
		record := mmdbtype.Map{
			"country": mmdbtype.Map{"iso_code": mmdbtype.String(e.code)},
		}
		if err := tree.Insert(e.network, record); err != nil {
			return fmt.Errorf("insert %s: %w", e.key, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := tree.WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
