package geoip_test

import (
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/service/geoip"
	"github.com/keyward/keyward/service/geoip/geoiptest"
)

// countries is the test database of most tests: public, documentation and private
// ranges of both families, and a /25 inside a /24 with another country.
var countries = map[string]string{
	"81.2.69.0/24":       "GB",
	"81.2.69.128/25":     "DE",
	"192.0.2.0/24":       "FR",
	"10.0.0.0/8":         "NL",
	"2001:db8:1::/48":    "JP",
	"2a02:ff0:1234::/48": "SE",
}

func openDB(t testing.TB, path string) *geoip.DB {
	t.Helper()
	db, err := geoip.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	return db
}

func TestCountry(t *testing.T) {
	t.Parallel()
	db := openDB(t, geoiptest.Write(t, countries))

	tests := []struct {
		name, ip string
		want     string // "" for a miss
	}{
		{"ipv4", "81.2.69.1", "GB"},
		{"ipv4 first of network", "81.2.69.0", "GB"},
		{"ipv4 more specific network wins", "81.2.69.200", "DE"},
		{"ipv4 documentation range", "192.0.2.55", "FR"},
		{"ipv4 private range", "10.20.30.40", "NL"},
		{"ipv6", "2001:db8:1::5", "JP"},
		{"ipv6 last of network", "2001:db8:1:ffff:ffff:ffff:ffff:ffff", "JP"},
		{"ipv6 other network", "2a02:ff0:1234:5::1", "SE"},
		{"ipv6 zone ignored", "2001:db8:1::5%eth0", "JP"},
		{"ipv4-mapped ipv6", "::ffff:81.2.69.1", "GB"},
		{"ipv4-mapped ipv6 more specific", "::ffff:81.2.69.200", "DE"},
		{"ipv4-mapped ipv6 private", "::ffff:10.0.0.1", "NL"},
		{"ipv4 miss", "8.8.8.8", ""},
		{"ipv4 miss next to a network", "81.2.70.0", ""},
		{"ipv6 miss", "2001:db8:2::1", ""},
		{"ipv6 loopback miss", "::1", ""},
		{"ipv4-mapped ipv6 miss", "::ffff:8.8.8.8", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, ok, err := db.Country(netip.MustParseAddr(tc.ip))
			require.NoError(t, err)
			assert.Equal(t, tc.want != "", ok, "ok")
			assert.Equal(t, tc.want, code)
		})
	}
}

func TestCountryInvalidAddress(t *testing.T) {
	t.Parallel()
	db := openDB(t, geoiptest.Write(t, countries))
	code, ok, err := db.Country(netip.Addr{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid IP address")
	assert.False(t, ok)
	assert.Empty(t, code)
}

func TestNilDB(t *testing.T) {
	t.Parallel()
	var db *geoip.DB
	code, ok, err := db.Country(netip.MustParseAddr("81.2.69.1"))
	require.ErrorIs(t, err, geoip.ErrNoDatabase)
	assert.False(t, ok)
	assert.Empty(t, code)
	assert.Equal(t, geoip.Metadata{}, db.Metadata())
	assert.NoError(t, db.Close())
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	before := time.Now().Add(-time.Second).Truncate(time.Second)
	db := openDB(t, geoiptest.Write(t, countries))
	md := db.Metadata()
	assert.Equal(t, "GeoIP2-Country", md.Type)
	assert.WithinRange(t, md.BuildTime, before, time.Now().Add(time.Second))

	built := time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)
	db = openDB(t, writeDB(t, "GeoLite2-City", 4, built, map[string]mmdbtype.Map{}))
	assert.Equal(t, geoip.Metadata{Type: "GeoLite2-City", BuildTime: built}, db.Metadata())
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, data, 0o600))
		return path
	}
	asn := writeDB(t, "GeoLite2-ASN", 6, time.Time{}, map[string]mmdbtype.Map{
		"81.2.69.0/24": {"autonomous_system_number": mmdbtype.Uint32(20712)},
	})

	tests := []struct {
		name, path string
		want       []string // substrings of the message
		is         error
	}{
		{"missing file", filepath.Join(dir, "missing.mmdb"), []string{"missing.mmdb", "no such file"}, fs.ErrNotExist},
		{"not a MaxMind DB", write("text.mmdb", []byte("country,network\nDE,81.2.69.0/24\n")),
			[]string{"text.mmdb", "not a MaxMind DB"}, nil},
		{"empty file", write("empty.mmdb", nil), []string{"empty.mmdb", "empty"}, nil},
		{"directory", dir, []string{dir}, nil},
		{"database without country data", asn, []string{asn, `"GeoLite2-ASN"`, "no country data"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, err := geoip.Open(tc.path)
			require.Error(t, err)
			assert.Nil(t, db)
			for _, s := range tc.want {
				assert.Contains(t, err.Error(), s)
			}
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			t.Log(err)
		})
	}
}

// TestCityLayout checks the GeoIP2-City layout, the located country winning over
// the registered one, and the fall-back to the registered country.
func TestCityLayout(t *testing.T) {
	t.Parallel()
	names := func(en string) mmdbtype.Map { return mmdbtype.Map{"en": mmdbtype.String(en)} }
	path := writeDB(t, "GeoIP2-City", 6, time.Time{}, map[string]mmdbtype.Map{
		"81.2.69.0/24": {
			"city":      mmdbtype.Map{"geoname_id": mmdbtype.Uint32(2950159), "names": names("Berlin")},
			"continent": mmdbtype.Map{"code": mmdbtype.String("EU"), "names": names("Europe")},
			"country": mmdbtype.Map{
				"geoname_id": mmdbtype.Uint32(2921044), "iso_code": mmdbtype.String("DE"),
				"names": names("Germany"),
			},
			"location": mmdbtype.Map{
				"latitude": mmdbtype.Float64(52.52), "longitude": mmdbtype.Float64(13.40),
				"time_zone": mmdbtype.String("Europe/Berlin"),
			},
			"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("GB"), "names": names("United Kingdom")},
			"subdivisions":       mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String("BE")}},
		},
		// Only a registered country, as for some anycast and satellite networks.
		"192.0.2.0/24": {
			"continent":          mmdbtype.Map{"code": mmdbtype.String("EU")},
			"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("FR"), "names": names("France")},
		},
		// Neither: in the database, yet no country.
		"2001:db8:1::/48": {"continent": mmdbtype.Map{"code": mmdbtype.String("AS")}},
		"2001:db8:2::/48": {"country": mmdbtype.Map{"iso_code": mmdbtype.String("JP")}},
	})
	db := openDB(t, path)

	tests := []struct{ ip, want string }{
		{"81.2.69.1", "DE"},
		{"::ffff:81.2.69.1", "DE"},
		{"192.0.2.1", "FR"},
		{"2001:db8:1::1", ""},
		{"2001:db8:2::1", "JP"},
		{"8.8.8.8", ""},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			code, ok, err := db.Country(netip.MustParseAddr(tc.ip))
			require.NoError(t, err)
			assert.Equal(t, tc.want != "", ok, "ok")
			assert.Equal(t, tc.want, code)
		})
	}
}

func TestIPv4OnlyDatabase(t *testing.T) {
	t.Parallel()
	db := openDB(t, writeDB(t, "GeoLite2-Country", 4, time.Time{}, map[string]mmdbtype.Map{
		"81.2.69.0/24": {"country": mmdbtype.Map{"iso_code": mmdbtype.String("GB")}},
	}))
	for ip, want := range map[string]string{"81.2.69.1": "GB", "::ffff:81.2.69.1": "GB", "2001:db8::1": "", "8.8.8.8": ""} {
		code, ok, err := db.Country(netip.MustParseAddr(ip))
		require.NoError(t, err, ip)
		assert.Equal(t, want != "", ok, ip)
		assert.Equal(t, want, code, ip)
	}
}

// TestWrongRecordLayout pins that a database whose type says country but whose
// records do not have the MaxMind layout (here a flat "country" string) fails
// the lookup with an error rather than resolving to nothing.
func TestWrongRecordLayout(t *testing.T) {
	t.Parallel()
	db := openDB(t, writeDB(t, "Flat-Country", 6, time.Time{}, map[string]mmdbtype.Map{
		"81.2.69.0/24": {"country": mmdbtype.String("GB")},
	}))
	code, ok, err := db.Country(netip.MustParseAddr("81.2.69.1"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "81.2.69.1")
	assert.False(t, ok)
	assert.Empty(t, code)
}

func TestConcurrentLookups(t *testing.T) {
	t.Parallel()
	db := openDB(t, geoiptest.Write(t, countries))
	want := map[netip.Addr]string{
		netip.MustParseAddr("81.2.69.1"):        "GB",
		netip.MustParseAddr("81.2.69.200"):      "DE",
		netip.MustParseAddr("::ffff:192.0.2.1"): "FR",
		netip.MustParseAddr("10.9.8.7"):         "NL",
		netip.MustParseAddr("2001:db8:1::1"):    "JP",
		netip.MustParseAddr("8.8.8.8"):          "",
		netip.MustParseAddr("2001:db8:2::1"):    "",
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 200 {
				for ip, code := range want {
					got, ok, err := db.Country(ip)
					if err != nil || ok != (code != "") || got != code {
						t.Errorf("Country(%s) = %q, %v, %v; want %q", ip, got, ok, err, code)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkCountry measures a lookup on a hit of each family, a miss, and a
// City-layout record (whose decoding skips the fields it does not need).
func BenchmarkCountry(b *testing.B) {
	country := openDB(b, geoiptest.Write(b, countries))
	city := openDB(b, writeDB(b, "GeoIP2-City", 6, time.Time{}, map[string]mmdbtype.Map{
		"81.2.69.0/24": {
			"city": mmdbtype.Map{"geoname_id": mmdbtype.Uint32(2950159), "names": mmdbtype.Map{
				"de": mmdbtype.String("Berlin"), "en": mmdbtype.String("Berlin"), "fr": mmdbtype.String("Berlin"),
				"ja": mmdbtype.String("ベルリン"), "ru": mmdbtype.String("Берлин"),
			}},
			"country": mmdbtype.Map{"iso_code": mmdbtype.String("DE"), "names": mmdbtype.Map{
				"de": mmdbtype.String("Deutschland"), "en": mmdbtype.String("Germany"),
				"fr": mmdbtype.String("Allemagne"), "ja": mmdbtype.String("ドイツ連邦共和国"),
			}},
			"location":           mmdbtype.Map{"latitude": mmdbtype.Float64(52.52), "longitude": mmdbtype.Float64(13.40)},
			"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("DE")},
		},
	}))
	for _, bc := range []struct {
		name string
		db   *geoip.DB
		ip   string
		ok   bool
	}{
		{"ipv4_hit", country, "81.2.69.1", true},
		{"ipv6_hit", country, "2001:db8:1::5", true},
		{"ipv4_mapped_hit", country, "::ffff:81.2.69.1", true},
		{"miss", country, "8.8.8.8", false},
		{"city_layout_hit", city, "81.2.69.1", true},
	} {
		ip := netip.MustParseAddr(bc.ip)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := bc.db.Country(ip); err != nil || ok != bc.ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
	b.Run("ipv4_hit_parallel", func(b *testing.B) {
		ip := netip.MustParseAddr("81.2.69.1")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, ok, err := country.Country(ip); err != nil || !ok {
					b.Error(ok, err)
					return
				}
			}
		})
	})
}

// writeDB writes a database of any type, IP version and records, for the layouts
// geoiptest.Write does not make. A zero built leaves the build time to now.
func writeDB(t testing.TB, databaseType string, ipVersion int, built time.Time, records map[string]mmdbtype.Map) string {
	t.Helper()
	opts := mmdbwriter.Options{
		DatabaseType:            databaseType,
		IPVersion:               ipVersion,
		IncludeReservedNetworks: true,
		DisableIPv4Aliasing:     true,
	}
	if !built.IsZero() {
		opts.BuildEpoch = built.Unix()
	}
	tree, err := mmdbwriter.New(opts)
	require.NoError(t, err)
	for cidr, rec := range records {
		_, network, err := net.ParseCIDR(cidr)
		require.NoError(t, err)
		require.NoError(t, tree.Insert(network, rec), cidr)
	}
	path := filepath.Join(t.TempDir(), databaseType+".mmdb")
	f, err := os.Create(path)
	require.NoError(t, err)
	_, err = tree.WriteTo(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return path
}

// FuzzCountry looks up arbitrary addresses: never a panic, always a two-letter code
// when found.
func FuzzCountry(f *testing.F) {
	db, err := geoip.Open(geoiptest.Write(f, map[string]string{"81.2.69.0/24": "GB", "2001:db8:1::/48": "DE"}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{81, 2, 69, 1})
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		code, found, err := db.Country(ip)
		if err == nil && found && len(code) != 2 {
			t.Fatalf("country %q for %v", code, ip)
		}
	})
}
