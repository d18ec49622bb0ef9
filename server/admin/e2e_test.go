//go:build e2e

package admin_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/server/servertest"
)

// browser starts a headless Chromium for the test.
func browser(t *testing.T) context.Context {
	path := os.Getenv("KEYWARD_CHROMIUM")
	if path == "" {
		for _, p := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if found, err := exec.LookPath(p); err == nil {
				path = found
				break
			}
		}
	}
	require.NotEmpty(t, path, "Chromium is needed: apt-get install chromium (make test-e2e does)")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 800))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	require.NoError(t, chromedp.Do(ctx), "starting Chromium")
	// Accept confirmation dialogs (revoking asks first).
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return ctx
}

func TestAdminPanel(t *testing.T) {
	kw := servertest.Start(t)
	ctx := browser(t)
	keys := keywardv1.NewKeyServiceClient(kw.Conn)
	admin := servertest.Auth(context.Background(), kw.AdminKey)

	// Sign in.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(kw.BaseURL+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("apikey")),
		chromedp.SendKeys(chromedp.ID("apikey"), kw.AdminKey),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("keys")),
	))
	url, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	assert.NotContains(t, url, kw.AdminKey, "the key is never in the URL")

	// Create a key: the secret is shown once.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("new-key")),
		chromedp.WaitVisible(chromedp.ID("k-name")),
		chromedp.SendKeys(chromedp.ID("k-name"), "POS terminal 12"),
		chromedp.SendKeys(chromedp.ID("k-owner"), "store-12"),
		chromedp.SendKeys(chromedp.ID("k-perms"), "orders, payments:refund"),
		chromedp.SendKeys(chromedp.ID("k-quota"), "3"),
		chromedp.SetValue(chromedp.ID("k-period"), "QUOTA_PERIOD_UNSPECIFIED"),
		chromedp.Click(chromedp.ID("create-submit")),
		chromedp.WaitVisible(chromedp.ID("new-secret")),
	))
	secret, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("new-secret")))
	require.NoError(t, err)
	keyID, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("new-key-id")))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(secret, "kw_live_"+keyID), "secret %q", secret)

	// The secret works through the API.
	v, err := keys.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: secret, RequiredPermission: "orders:create"})
	require.NoError(t, err)
	assert.True(t, v.GetValid())

	// An API error is shown as the API's own message.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("new-key")),
		chromedp.WaitVisible(chromedp.ID("k-name")),
		chromedp.SendKeys(chromedp.ID("k-name"), "bad"),
		chromedp.SendKeys(chromedp.ID("k-owner"), "store-12"),
		chromedp.SendKeys(chromedp.ID("k-cidrs"), "10.0.0.1/8"),
		chromedp.Click(chromedp.ID("create-submit")),
		chromedp.WaitVisible(chromedp.ID("error")),
	))
	errText, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("error")))
	require.NoError(t, err)
	assert.Contains(t, errText, "allowed_cidrs")

	// Open the key, revoke it (after the confirmation), see it revoked.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(kw.BaseURL+"/admin/#key/"+keyID),
		chromedp.WaitVisible(chromedp.ID("key-detail")),
	))
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	require.NoError(t, err)
	assert.NotContains(t, html, secret, "the secret is not shown again")
	quota, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("key-quota")))
	require.NoError(t, err)
	assert.Equal(t, "3 in total", quota, "a total quota round-trips through the panel")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("revoke-reason"), "terminal stolen"),
		chromedp.Click(chromedp.ID("revoke")),
		chromedp.WaitVisible(chromedp.CSS(".state-revoked")),
	))
	state, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("key-state")))
	require.NoError(t, err)
	assert.Equal(t, "revoked", state)
	v, err = keys.VerifyKey(admin, &keywardv1.VerifyKeyRequest{Secret: secret})
	require.NoError(t, err)
	assert.Equal(t, keywardv1.VerificationReason_VERIFICATION_REASON_REVOKED, v.GetReason())

	// The revocation appears in the live feed, the calls in the audit log.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("nav-revocations")),
		chromedp.WaitVisible(chromedp.CSS(".revocation")),
	))
	feed, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("revocations")))
	require.NoError(t, err)
	assert.Contains(t, feed, keyID)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("nav-audit")), chromedp.WaitVisible(chromedp.ID("audit"))))
	var audit string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		_ = chromedp.Do(ctx, chromedp.Click(chromedp.ID("a-filter")), chromedp.Sleep(300*time.Millisecond))
		got, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.ID("audit")))
		if err != nil {
			got = "error: " + err.Error()
		}
		if audit = got; strings.Contains(audit, "RevokeKey") {
			break
		}
	}
	require.Contains(t, audit, "RevokeKey", "the audit page lists the revocation")
	assert.Contains(t, audit, "CreateKey")

	// The key list, for the README: written to docs/ only when asked (make
	// screenshot), so that a test run leaves the tree as it was.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("nav-keys")),
		chromedp.WaitVisible(chromedp.CSS(".key-link")),
	))
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "admin-keys.png")
	if os.Getenv("KEYWARD_UPDATE_SCREENSHOT") != "" {
		out = filepath.Join("..", "..", "docs", "admin-keys.png")
	}
	require.NoError(t, os.WriteFile(out, png, 0o644))
}
