package page

import (
	"encoding/base64"
	"strings"

	"github.com/keyward/keyward/service/errs"
)

// Page tokens are opaque to clients: the last item's position, tagged with the
// listing they belong to so that a token from one listing is refused by another.

// Encode returns the page token of the listing tag that starts after last.
func Encode(tag, last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tag + "." + last))
}

// Decode returns the position in a page token of the listing tag, or an
// INVALID_ARGUMENT error naming the RPC it must come from.
func Decode(tag, token, rpc string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || !strings.HasPrefix(string(b), tag+".") {
		return "", errs.InvalidArgument("page_token", "is not a token returned by %s", rpc)
	}
	return string(b[len(tag)+1:]), nil
}
