package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
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
	// Compare says which Keyward figures the endpoint is the peer of: "issue" (a
	// token endpoint: IssueToken), "validate" (an introspection endpoint:
	// ValidateToken) or "baseline" (a health endpoint: the REST /healthz no-op);
	// empty: none.
	Compare string `json:"compare,omitempty"`
	// Setup, when set, is a request made once before the endpoint is driven at
	// each concurrency, untimed: for instance creating the token that an
	// introspection endpoint is then asked about. Every {{setup}} in the
	// endpoint's URL, headers and body is replaced by what it extracted.
	Setup *Setup `json:"setup,omitempty"`
}

// Setup is a request whose JSON response holds a value the endpoint needs.
type Setup struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
	// Expect is the status the response must have; default 200.
	Expect int `json:"expect,omitempty"`
	// Extract is the dot-separated path of a string or number in the JSON
	// response, e.g. "auth.client_token".
	Extract string `json:"extract"`
}

// setupPlaceholder is what the value extracted by Setup replaces.
const setupPlaceholder = "{{setup}}"

// compares are the values of Endpoint.Compare.
var compares = []string{"issue", "validate", "baseline"}

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
	if ep.Compare != "" && !slices.Contains(compares, ep.Compare) {
		return fmt.Errorf("peer endpoint %q: compare must be \"issue\", \"validate\" or \"baseline\"", ep.Name)
	}
	if _, err := http.NewRequest(ep.Method, ep.URL, nil); err != nil {
		return fmt.Errorf("peer endpoint %q: %w", ep.Name, err)
	}
	uses := strings.Contains(ep.URL, setupPlaceholder) || strings.Contains(ep.Body, setupPlaceholder)
	for k, v := range ep.Headers {
		uses = uses || strings.Contains(k, setupPlaceholder) || strings.Contains(v, setupPlaceholder)
	}
	if s := ep.Setup; s != nil {
		if s.Method == "" {
			s.Method = http.MethodGet
		}
		if s.Expect == 0 {
			s.Expect = http.StatusOK
		}
		if !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
			return fmt.Errorf("peer endpoint %q: setup url must start with http:// or https://", ep.Name)
		}
		if _, err := http.NewRequest(s.Method, s.URL, nil); err != nil {
			return fmt.Errorf("peer endpoint %q: setup: %w", ep.Name, err)
		}
		if s.Extract == "" {
			return fmt.Errorf("peer endpoint %q: setup needs extract, the path of a value in its JSON response", ep.Name)
		}
		if !uses {
			return fmt.Errorf("peer endpoint %q: setup is given but %s is in neither url, headers nor body", ep.Name, setupPlaceholder)
		}
	} else if uses {
		return fmt.Errorf("peer endpoint %q: %s needs a setup", ep.Name, setupPlaceholder)
	}
	return nil
}

// prepare makes the endpoint's setup request, if it has one, and returns the
// endpoint with the extracted value in place of every {{setup}}.
func (ep Endpoint) prepare(client *http.Client) (Endpoint, error) {
	s := ep.Setup
	if s == nil {
		return ep, nil
	}
	req, err := http.NewRequest(s.Method, s.URL, strings.NewReader(s.Body))
	if err != nil {
		return ep, err
	}
	for k, v := range s.Headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return ep, fmt.Errorf("setup: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return ep, fmt.Errorf("setup: %w", err)
	}
	if resp.StatusCode != s.Expect {
		return ep, fmt.Errorf("setup: status %d, want %d: %.200s", resp.StatusCode, s.Expect, body)
	}
	value, err := extract(body, s.Extract)
	if err != nil {
		return ep, fmt.Errorf("setup: %w", err)
	}
	fill := func(t string) string { return strings.ReplaceAll(t, setupPlaceholder, value) }
	ep.URL, ep.Body, ep.Setup = fill(ep.URL), fill(ep.Body), nil
	headers := make(map[string]string, len(ep.Headers))
	for k, v := range ep.Headers {
		headers[fill(k)] = fill(v)
	}
	ep.Headers = headers
	return ep, nil
}

// extract returns the string or number at a dot-separated path in a JSON document.
func extract(doc []byte, path string) (string, error) {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return "", fmt.Errorf("response is not JSON: %w", err)
	}
	for _, key := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", fmt.Errorf("%s: %q is not inside an object", path, key)
		}
		if v, ok = m[key]; !ok {
			return "", fmt.Errorf("%s: no %q in the response", path, key)
		}
	}
	switch v := v.(type) {
	case string:
		if v == "" {
			return "", fmt.Errorf("%s is empty", path)
		}
		return v, nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	default:
		return "", fmt.Errorf("%s is not a string or a number", path)
	}
}

// caller returns a caller of the endpoint through client; a response with
// another status than Expect is an error. The endpoint is prepared already: any
// setup was made.
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
