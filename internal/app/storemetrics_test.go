package app

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/repository/embedded"
)

// TestEveryStoreOperationIsMeasured calls every method of the storage contract
// through the metrics decorator, on an embedded store, and checks that each call
// is timed once, under the method's name in snake case: found by reflection over
// the interfaces, so a method added to the contract is checked without a new row.
func TestEveryStoreOperationIsMeasured(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.Mkdir(dir, 0o700))
	st, err := embedded.Open(ctx, dir)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	store := observeStore(st, newStoreObserver(reg))
	t.Cleanup(func() { _ = store.Close(ctx) })

	// timed returns how many calls were timed, by op.
	timed := func() map[string]uint64 {
		families, err := reg.Gather()
		require.NoError(t, err)
		out := map[string]uint64{}
		for _, f := range families {
			if f.GetName() != "keyward_store_operation_seconds" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "op" {
						out[l.GetValue()] = m.GetHistogram().GetSampleCount()
					}
				}
			}
		}
		return out
	}
	// check calls every method of iface on impl with zero arguments (pointers to
	// zero values, a live context): the store's answers do not matter, only that
	// each call was timed.
	check := func(t *testing.T, iface reflect.Type, impl any, unmeasured ...string) {
		t.Helper()
		for i := range iface.NumMethod() {
			m := iface.Method(i)
			if repositoryOf(m) != nil || slices.Contains(unmeasured, m.Name) {
				continue // an accessor: its repository is checked on its own
			}
			args := make([]reflect.Value, m.Type.NumIn())
			for j := range args {
				switch in := m.Type.In(j); {
				case in == reflect.TypeFor[context.Context]():
					args[j] = reflect.ValueOf(ctx)
				case in.Kind() == reflect.Pointer:
					args[j] = reflect.New(in.Elem())
				default:
					args[j] = reflect.Zero(in)
				}
			}
			before := timed()
			reflect.ValueOf(impl).MethodByName(m.Name).Call(args)
			after := timed()
			op := snakeCase(m.Name)
			assert.Equal(t, before[op]+1, after[op], "%s.%s is timed as %q", iface.Name(), m.Name, op)
			assert.Equal(t, sum(before)+1, sum(after), "%s.%s is timed once", iface.Name(), m.Name)
		}
	}

	storeType := reflect.TypeFor[repository.Store]()
	for i := range storeType.NumMethod() {
		m := storeType.Method(i)
		if iface := repositoryOf(m); iface != nil {
			repo := reflect.ValueOf(store).MethodByName(m.Name).Call(nil)[0].Interface()
			t.Run(m.Name, func(t *testing.T) { check(t, iface, repo) })
		}
	}
	// Close is not timed: it ends the store, once, at shutdown.
	t.Run("Store", func(t *testing.T) { check(t, storeType, store, "Close") })
}

// repositoryOf returns the interface a Store method such as Keys returns, nil for
// any other method.
func repositoryOf(m reflect.Method) reflect.Type {
	if m.Type.NumIn() == 0 && m.Type.NumOut() == 1 && m.Type.Out(0).Kind() == reflect.Interface &&
		strings.HasSuffix(m.Type.Out(0).Name(), "Repository") {
		return m.Type.Out(0)
	}
	return nil
}

func sum(counts map[string]uint64) (n uint64) {
	for _, c := range counts {
		n += c
	}
	return n
}

// snakeCase turns a method name into its op label: AppendRevocationOnce is
// append_revocation_once.
func snakeCase(name string) string {
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
