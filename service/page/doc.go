// Package page encodes and decodes the page tokens of listings: opaque to
// clients, they hold the last item's position tagged with the listing they belong
// to, so that a token from one listing is refused by another.
package page
