package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyward/keyward/internal/cli"
)

func TestRunExitCodes(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		output string
	}{
		{[]string{"version"}, 0, "keyward"},
		{[]string{"help"}, 0, "usage"},
		{[]string{"serve", "-h"}, 0, "KEYWARD_GRPC_ADDR"},
		{[]string{"launch"}, 2, `unknown command "launch"`},
		{[]string{"serve", "--no-such-flag"}, 2, "no-such-flag"},
		{[]string{"serve", "--log-format", "xml"}, 2, "--log-format"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errs strings.Builder
			code := cli.Run(tc.args, strings.NewReader(""), &out, &errs)
			assert.Equal(t, tc.code, code)
			assert.Contains(t, out.String()+errs.String(), tc.output)
		})
	}
}
