//go:build !race

// The race detector makes sync.Pool drop items at random, so this runs without it.

package geoip_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyward/keyward/service/geoip/geoiptest"
)

func TestCountryDoesNotAllocate(t *testing.T) {
	db := openDB(t, geoiptest.Write(t, countries))
	for _, s := range []string{"81.2.69.1", "::ffff:81.2.69.1", "2001:db8:1::5", "8.8.8.8"} {
		ip := netip.MustParseAddr(s)
		allocs := testing.AllocsPerRun(1000, func() {
			if _, _, err := db.Country(ip); err != nil {
				t.Fatal(err)
			}
		})
		assert.Zero(t, allocs, s)
	}
}
