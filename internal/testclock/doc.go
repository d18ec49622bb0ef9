// Package testclock is the clock tests inject in place of time.Now: it stands
// still until the test moves it, so that a test waits on no wall-clock time for
// an expiry, a grace period or a window to pass.
package testclock
