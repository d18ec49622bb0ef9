// Package geoip resolves client IP addresses to countries, for keys restricted to
// (or denied from) some countries.
//
// The operator gives Keyward a MaxMind DB file (--geoip-db) in the GeoLite2/GeoIP2
// Country or City layout, or a third-party database with the same layout; nothing
// is downloaded at run time. A lookup reads country.iso_code, the country the
// address is located in, and falls back to registered_country.iso_code, the
// country its network is registered to, when the record has no located country.
// Codes are ISO 3166-1 alpha-2 as stored in the database (upper case in MaxMind's
// files).
//
// A nil *DB stands for "no database configured": its Country returns
// ErrNoDatabase, so that a caller enforcing a country rule can fail closed with a
// clear reason.
//
// Tests build their own database with package geoiptest.
package geoip

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// ErrNoDatabase is returned by Country on a nil *DB: no GeoIP database is
// configured, so no address has a known country.
var ErrNoDatabase = errors.New("geoip: no GeoIP database configured (--geoip-db)")

// DB is an open GeoIP country database. Country is safe for concurrent use;
// Close must not run concurrently with Country, nor before the lookups in
// flight are done: it unmaps the file they read.
type DB struct {
	r        *maxminddb.Reader
	ipv4Only bool
	meta     Metadata
}

// Metadata describes an open database, for logs.
type Metadata struct {
	// Type is the database type from the file, e.g. "GeoLite2-Country".
	Type string
	// BuildTime is when the database was built; it tells how stale it is.
	BuildTime time.Time
}

// LogValue makes a Metadata log as a group of type and build_time.
func (m Metadata) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("type", m.Type),
		slog.Time("build_time", m.BuildTime),
	)
}

// record holds the only fields a lookup decodes; the decoder skips the others
// (names, continent, location, city...).
type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

// recordPool holds zeroed records for Country.
var recordPool = sync.Pool{New: func() any { return new(record) }}

// Open opens the MaxMind DB file at path (memory-mapped) and checks that it is a
// database with country data: its type must name a Country, City or Enterprise
// database (GeoLite2-Country, GeoIP2-City, GeoIP2-Enterprise, ...). Errors name
// the path and say what is wrong. Close the DB when done.
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		var pathErr *fs.PathError
		var invalid maxminddb.InvalidDatabaseError
		switch {
		case errors.As(err, &pathErr): // the message already names the path
			return nil, fmt.Errorf("geoip: cannot open GeoIP database: %w", err)
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("geoip: %s is not a MaxMind DB (.mmdb) file: %w", path, err)
		default:
			return nil, fmt.Errorf("geoip: cannot open GeoIP database %s: %w", path, err)
		}
	}
	md := r.Metadata
	if !hasCountryData(md.DatabaseType) {
		_ = r.Close()
		return nil, fmt.Errorf("geoip: %s is a %q database, which has no country data; "+
			"use a GeoLite2/GeoIP2 Country or City database", path, md.DatabaseType)
	}
	if md.IPVersion != 4 && md.IPVersion != 6 {
		_ = r.Close()
		return nil, fmt.Errorf("geoip: %s has unsupported ip_version %d in its metadata", path, md.IPVersion)
	}
	return &DB{
		r:        r,
		ipv4Only: md.IPVersion == 4,
		meta:     Metadata{Type: md.DatabaseType, BuildTime: md.BuildTime().UTC()},
	}, nil
}

// hasCountryData reports whether a database type has the Country/City record
// layout: MaxMind's GeoLite2-Country, GeoIP2-Country, GeoLite2-City, GeoIP2-City
// (and regional editions), GeoIP2-Enterprise, and third-party look-alikes named
// the same way. ASN, ISP, Domain, Connection-Type and Anonymous-IP have none.
func hasCountryData(databaseType string) bool {
	t := strings.ToLower(databaseType)
	return strings.Contains(t, "country") || strings.Contains(t, "city") || strings.Contains(t, "enterprise")
}

// Country returns the ISO 3166-1 alpha-2 code of the country of ip. An
// IPv4-mapped IPv6 address (::ffff:a.b.c.d) is looked up as the IPv4 address,
// and a zone is ignored. ok is false, with a nil error, when the database has no
// country for the address: it is not in the database (private and reserved
// ranges usually are not), its record has neither a country nor a registered
// country, or it is IPv6 and the database IPv4-only. err is ErrNoDatabase on a
// nil DB, and otherwise reports an invalid address or a corrupt database.
//
// Country is safe for concurrent use and does not allocate, except to build an
// error.
func (d *DB) Country(ip netip.Addr) (code string, ok bool, err error) {
	if d == nil {
		return "", false, ErrNoDatabase
	}
	if !ip.IsValid() {
		return "", false, errors.New("geoip: invalid IP address")
	}
	ip = ip.Unmap()
	if d.ipv4Only && ip.Is6() {
		return "", false, nil
	}
	res := d.r.Lookup(ip)
	if !res.Found() {
		if err := res.Err(); err != nil {
			return "", false, fmt.Errorf("geoip: looking up %s: %w", ip, err)
		}
		return "", false, nil
	}
	// Decode takes an any, so a record on the stack would escape to the heap on
	// every call; a pooled one does not. Decode leaves the fields a record lacks
	// untouched, hence pooled records are always zeroed.
	rec := recordPool.Get().(*record)
	err = res.Decode(rec)
	located, registered := rec.Country.ISOCode, rec.RegisteredCountry.ISOCode
	*rec = record{}
	recordPool.Put(rec)
	if err != nil {
		return "", false, fmt.Errorf("geoip: decoding the record of %s: %w", ip, err)
	}
	if located != "" {
		return located, true, nil
	}
	if registered != "" {
		return registered, true, nil
	}
	return "", false, nil
}

// Metadata returns the database type and build time, for logs. It is the zero
// Metadata on a nil DB.
func (d *DB) Metadata() Metadata {
	if d == nil {
		return Metadata{}
	}
	return d.meta
}

// Close releases the database. It is a no-op on a nil DB. See DB for when it
// may be called.
func (d *DB) Close() error {
	if d == nil {
		return nil
	}
	return d.r.Close()
}
