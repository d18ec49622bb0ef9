package service

import (
	"encoding/base64"
	"strings"
)

// Page tokens are opaque to clients: the last item's position, tagged with the
// listing they belong to so that a token from one listing is refused by another.

func encodePageToken(tag, last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tag + "." + last))
}

// decodePageToken returns the position in a page token of the listing tag, or an
// INVALID_ARGUMENT error naming the RPC it must come from.
func decodePageToken(tag, token, rpc string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || !strings.HasPrefix(string(b), tag+".") {
		return "", InvalidArgument("page_token", "is not a token returned by %s", rpc)
	}
	return string(b[len(tag)+1:]), nil
}
