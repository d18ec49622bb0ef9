package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// Endpoint is an HTTP endpoint of any server, such as a peer's token or
// introspection endpoint, to drive with the same load generator as Keyward.
type Endpoint struct {
	Name    string            `json:"name"`
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
	// Expect is the status every response must have; default 200.
	Expect int `json:"expect,omitempty"`
	// Compare says which Keyward targets the endpoint is the peer of: "issue"
	// (a token endpoint) or "validate" (an introspection endpoint); empty: none.
	Compare string `json:"compare,omitempty"`
}

// endpointFlag collects -peer values: each a JSON object, or @file holding an
// object or an array of them.
type endpointFlag []Endpoint

func (e *endpointFlag) String() string { return fmt.Sprint(len(*e), " endpoints") }

func (e *endpointFlag) Set(v string) error {
	data := []byte(v)
	if file, ok := strings.CutPrefix(v, "@"); ok {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return err
		}
	}
	data = bytes.TrimSpace(data)
	var list []Endpoint
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &list); err != nil {
			return fmt.Errorf("peer endpoints: %w", err)
		}
	} else {
		var one Endpoint
		if err := json.Unmarshal(data, &one); err != nil {
			return fmt.Errorf("peer endpoint: %w", err)
		}
		list = append(list, one)
	}
	for i := range list {
		if err := list[i].check(); err != nil {
			return err
		}
	}
	*e = append(*e, list...)
	return nil
}

func (ep *Endpoint) check() error {
	if ep.Method == "" {
		ep.Method = http.MethodGet
	}
	if ep.Expect == 0 {
		ep.Expect = http.StatusOK
	}
	if ep.Name == "" {
		ep.Name = ep.Method + " " + ep.URL
	}
	if !strings.HasPrefix(ep.URL, "http://") && !strings.HasPrefix(ep.URL, "https://") {
		return fmt.Errorf("peer endpoint %q: url must start with http:// or https://", ep.Name)
	}
	if ep.Compare != "" && ep.Compare != "issue" && ep.Compare != "validate" {
		return fmt.Errorf("peer endpoint %q: compare must be \"issue\" or \"validate\"", ep.Name)
	}
	if _, err := http.NewRequest(ep.Method, ep.URL, nil); err != nil {
		return fmt.Errorf("peer endpoint %q: %w", ep.Name, err)
	}
	return nil
}

// caller returns a caller of the endpoint through client; a response with
// another status than Expect is an error.
func (ep Endpoint) caller(client *http.Client) caller {
	body := []byte(ep.Body)
	return func() error {
		req, err := http.NewRequest(ep.Method, ep.URL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		for k, v := range ep.Headers {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != ep.Expect {
			return fmt.Errorf("status %d, want %d", resp.StatusCode, ep.Expect)
		}
		return nil
	}
}
