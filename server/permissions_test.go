package server

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/keyward/keyward/service/permission"
)

// Every RPC of every Keyward service must have an entry in the permission table.
func TestEveryRPCIsInThePermissionTable(t *testing.T) {
	t.Parallel()
	var methods int
	protoregistry.GlobalFiles.RangeFilesByPackage("keyward.v1", func(f protoreflect.FileDescriptor) bool {
		for i := range f.Services().Len() {
			svc := f.Services().Get(i)
			for j := range svc.Methods().Len() {
				full := "/" + string(svc.FullName()) + "/" + string(svc.Methods().Get(j).Name())
				_, ok := MethodAccess(full)
				assert.True(t, ok, "%s is missing from methodAccess", full)
				methods++
			}
		}
		return true
	})
	assert.GreaterOrEqual(t, methods, 25, "the generated services were found")
}

func TestPermissionTableEntriesParse(t *testing.T) {
	t.Parallel()
	for method, a := range methodAccess {
		if a.Permission == "" {
			continue
		}
		_, err := permission.Parse(a.Permission)
		assert.NoError(t, err, method)
		assert.False(t, a.Public, "%s is public and needs a permission", method)
	}
}
