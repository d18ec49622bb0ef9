package server

import (
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/errs"
)

// Every enum the API converts has all its values converted: a new reason, code or
// state in the service, or a new value in the proto, fails here instead of reaching
// clients as UNSPECIFIED (or as an internal error). The domain's constants are read
// from its source, so a constant added there is seen without this test changing.
func TestEnumConversionsAreComplete(t *testing.T) {
	t.Parallel()
	t.Run("verification reasons", func(t *testing.T) {
		checkEnumMap(t, constants(t, "../service/keys", "Reason"), reasonToProto, keywardv1.VerificationReason(0).Descriptor())
	})
	t.Run("token validation reasons", func(t *testing.T) {
		checkEnumMap(t, constants(t, "../service/tokens", "TokenReason"), tokenReasons, keywardv1.TokenValidationReason(0).Descriptor())
	})
	t.Run("temporary token reasons", func(t *testing.T) {
		checkEnumMap(t, constants(t, "../service/temporary", "Reason"), temporaryReasons, keywardv1.TemporaryTokenReason(0).Descriptor())
	})
	t.Run("signing key states", func(t *testing.T) {
		checkEnumMap(t, constants(t, "../service/tokens", "SigningKeyState"), signingKeyStates, keywardv1.SigningKeyState(0).Descriptor())
	})
	t.Run("signing algorithms", func(t *testing.T) {
		want := constantsNamed(t, "../service/accesstoken", "Alg")
		checkEnumMap(t, want, algorithms, keywardv1.SigningAlgorithm(0).Descriptor())
	})
	t.Run("error codes", func(t *testing.T) {
		for name, v := range constants(t, "../service/errs", "Code") {
			_, ok := serviceCodes[errs.Code(mustInt(t, v))]
			assert.True(t, ok, "service.%s has no gRPC code", name)
		}
	})
	t.Run("environments", func(t *testing.T) {
		envs := constants(t, "../repository", "Environment")
		require.NotEmpty(t, envs)
		for name, v := range envs {
			e := repository.Environment(constant.StringVal(v))
			p := environmentToProto(e)
			assert.NotZero(t, p, "repository.%s has no proto value", name)
			assert.Equal(t, e, environmentFromProto(p), "repository.%s round-trips", name)
		}
		values := keywardv1.Environment(0).Descriptor().Values()
		assert.Equal(t, values.Len()-1, len(envs), "every proto environment but UNSPECIFIED is a stored one")
		for i := range values.Len() {
			if n := values.Get(i).Number(); n != 0 {
				assert.NotEmpty(t, environmentFromProto(keywardv1.Environment(n)), "%s", values.Get(i).Name())
			}
		}
	})
	t.Run("key state filters", func(t *testing.T) {
		reached := map[repository.KeyStateFilter]bool{}
		values := keywardv1.KeyState(0).Descriptor().Values()
		for i := range values.Len() {
			n := values.Get(i).Number()
			f := stateFilterFromProto(keywardv1.KeyState(n))
			if n != 0 {
				assert.NotEqual(t, repository.KeyFilterAny, f, "%s selects a state", values.Get(i).Name())
				assert.False(t, reached[f], "%s selects a state of its own", values.Get(i).Name())
			}
			reached[f] = true
		}
		for name, v := range constants(t, "../repository", "KeyStateFilter") {
			assert.True(t, reached[repository.KeyStateFilter(constant.StringVal(v))], "repository.%s is reachable from the API", name)
		}
	})
}

// checkEnumMap checks that m has every domain constant in want as a key, that its
// values are distinct, and that every value of the proto enum but 0 and the
// deprecated ones is reached.
func checkEnumMap[K ~int | ~string, V protoreflect.Enum](t *testing.T, want map[string]constant.Value, m map[K]V, desc protoreflect.EnumDescriptor) {
	t.Helper()
	require.NotEmpty(t, want, "the domain's constants were found")
	for name, v := range want {
		var k K
		if rv := reflect.ValueOf(&k).Elem(); rv.Kind() == reflect.String {
			rv.SetString(constant.StringVal(v))
		} else {
			rv.SetInt(int64(mustInt(t, v)))
		}
		_, ok := m[k]
		assert.True(t, ok, "%s has no proto value", name)
	}
	assert.Len(t, m, len(want), "the map converts the domain's constants and nothing else")
	reached := map[protoreflect.EnumNumber]bool{}
	for k, v := range m {
		n := v.Number()
		assert.NotZero(t, n, "%v converts to UNSPECIFIED", k)
		assert.False(t, reached[n], "%v converts to a value another constant has", k)
		reached[n] = true
	}
	for i := range desc.Values().Len() {
		d := desc.Values().Get(i)
		deprecated := d.Options().(*descriptorpb.EnumValueOptions).GetDeprecated()
		if d.Number() != 0 && !deprecated {
			assert.True(t, reached[d.Number()], "%s is reached by no domain constant (mark it deprecated if it is never answered)", d.Name())
		}
	}
}

func mustInt(t *testing.T, v constant.Value) int {
	t.Helper()
	n, ok := constant.Int64Val(v)
	require.True(t, ok, "%v is an integer", v)
	return int(n)
}

// constants returns the constants of the named type declared in the package in dir
// (test files aside), by name, with their values.
func constants(t *testing.T, dir, typeName string) map[string]constant.Value {
	t.Helper()
	return readConstants(t, dir, func(_ string, typ string) bool { return typ == typeName })
}

// constantsNamed returns the package's untyped constants whose names start with
// prefix.
func constantsNamed(t *testing.T, dir, prefix string) map[string]constant.Value {
	t.Helper()
	return readConstants(t, dir, func(name, typ string) bool { return typ == "" && strings.HasPrefix(name, prefix) })
}

// readConstants evaluates the package's constant declarations: literals, iota and
// sums or differences of them, which is what enums are made of. A constant the
// filter keeps whose value is something else fails the test, so none is missed.
func readConstants(t *testing.T, dir string, keep func(name, typ string) bool) map[string]constant.Value {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	out := map[string]constant.Value{}
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			// Within a block, a spec without type and values repeats the last ones.
			var typ string
			var exprs []ast.Expr
			for index, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if vs.Type != nil || len(vs.Values) > 0 {
					typ, exprs = "", vs.Values
					if id, ok := vs.Type.(*ast.Ident); ok {
						typ = id.Name
					}
				}
				for i, name := range vs.Names {
					if !name.IsExported() || !keep(name.Name, typ) {
						continue
					}
					require.Less(t, i, len(exprs), "%s has a value", name.Name)
					v, ok := evalConst(exprs[i], index)
					require.True(t, ok, "%s: the test reads literals, iota and their sums only", name.Name)
					out[name.Name] = v
				}
			}
		}
	}
	return out
}

func evalConst(e ast.Expr, index int) (constant.Value, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			s, err := strconv.Unquote(e.Value)
			return constant.MakeString(s), err == nil
		}
		v := constant.MakeFromLiteral(e.Value, e.Kind, 0)
		return v, v.Kind() != constant.Unknown
	case *ast.Ident:
		return constant.MakeInt64(int64(index)), e.Name == "iota"
	case *ast.ParenExpr:
		return evalConst(e.X, index)
	case *ast.BinaryExpr:
		if e.Op != token.ADD && e.Op != token.SUB {
			return nil, false
		}
		x, ok1 := evalConst(e.X, index)
		y, ok2 := evalConst(e.Y, index)
		if !ok1 || !ok2 {
			return nil, false
		}
		return constant.BinaryOp(x, e.Op, y), true
	}
	return nil, false
}
