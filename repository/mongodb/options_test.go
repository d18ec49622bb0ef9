package mongodb

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDatabaseName(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"default", Options{URI: "mongodb://localhost:27017"}, "keyward"},
		{"default with slash", Options{URI: "mongodb://localhost:27017/?replicaSet=rs0"}, "keyward"},
		{"from URI", Options{URI: "mongodb://u:p@a:1,b:2/vault?authSource=admin"}, "vault"},
		{"option wins", Options{URI: "mongodb://localhost/vault", Database: "kw"}, "kw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := databaseName(tc.o)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	_, err := databaseName(Options{URI: "mongodb://user:sec:ret@host/db"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "sec:ret")
}
