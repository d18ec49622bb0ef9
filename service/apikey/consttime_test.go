package apikey

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Secrets are compared in constant time: Equal uses crypto/subtle, and the
// verification code compares secret hashes only through Equal. Checked on the
// source, since timing cannot be measured reliably in a test.
func TestSecretComparisonIsConstantTime(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "apikey.go", nil, 0)
	require.NoError(t, err)
	var equalUsesSubtle bool
	ast.Inspect(f, func(n ast.Node) bool {
		if fn, ok := n.(*ast.FuncDecl); ok && fn.Name.Name == "Equal" {
			ast.Inspect(fn, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "ConstantTimeCompare" {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "subtle" {
						equalUsesSubtle = true
					}
				}
				return true
			})
		}
		return true
	})
	assert.True(t, equalUsesSubtle, "apikey.Equal uses subtle.ConstantTimeCompare")

	// Every use of a stored secret hash in the use cases goes through apikey.Equal.
	var files []string
	for _, pkg := range []string{"keys", "tokens", "revocation", "audit", "authz"} {
		matches, err := filepath.Glob(filepath.Join("..", pkg, "*.go"))
		require.NoError(t, err)
		files = append(files, matches...)
	}
	require.NotEmpty(t, files)
	var checked int
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			switch e := n.(type) {
			case *ast.BinaryExpr:
				for _, side := range []ast.Expr{e.X, e.Y} {
					if sel, ok := side.(*ast.SelectorExpr); ok && (sel.Sel.Name == "SecretHash" || sel.Sel.Name == "PreviousSecretHash" || sel.Sel.Name == "Hash") {
						t.Errorf("%s: a secret hash compared with %s", fset.Position(e.Pos()), e.Op)
					}
				}
			case *ast.CallExpr:
				if sel, ok := e.Fun.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "bytes" && (sel.Sel.Name == "Equal" || sel.Sel.Name == "Compare") {
						t.Errorf("%s: bytes.%s on the verification path", fset.Position(e.Pos()), sel.Sel.Name)
					}
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "apikey" && sel.Sel.Name == "Equal" {
						checked++
					}
				}
			}
			return true
		})
	}
	assert.GreaterOrEqual(t, checked, 4, "secret hashes are compared with apikey.Equal (verify, refresh, temporary, revoke)")
}
