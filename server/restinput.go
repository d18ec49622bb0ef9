package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/keyward/keyward/internal/pbjson"
)

// What a REST request carries besides its JSON body, the path parameters and the
// query string, is checked here, before the gateway builds the gRPC request from
// it: every value must be valid UTF-8 (a proto string must be), and every query
// parameter must name a field of the request that this route takes from the query.
// A parameter the route does not know is refused, as an unknown field in a JSON
// body is, so that a typo never passes silently; so is one naming a field the path
// or the body sets. Both answer INVALID_ARGUMENT naming the parameter.

// restRoute is what one REST route binds where: its request message, and the
// fields the path and the body set (all of them when the body is "*").
type restRoute struct {
	input   protoreflect.MessageDescriptor
	path    [][]protoreflect.FieldDescriptor
	body    []protoreflect.FieldDescriptor
	bodyAll bool
}

// restRoutes holds every REST route by HTTP method and then by its pattern as
// runtime.Pattern.String() spells it ("/v1/keys/{key_id=*}:rotate").
type restRoutes map[string]map[string]*restRoute

// newRESTRoutes reads the routes from the google.api.http options of the services
// in files.
func newRESTRoutes(files ...protoreflect.FileDescriptor) (restRoutes, error) {
	routes := restRoutes{}
	for _, f := range files {
		for i := range f.Services().Len() {
			methods := f.Services().Get(i).Methods()
			for j := range methods.Len() {
				m := methods.Get(j)
				rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
				for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
					if r == nil {
						continue
					}
					if err := routes.add(m.Input(), r); err != nil {
						return nil, fmt.Errorf("%s: %w", m.FullName(), err)
					}
				}
			}
		}
	}
	return routes, nil
}

func (rs restRoutes) add(input protoreflect.MessageDescriptor, r *annotations.HttpRule) error {
	var method, template string
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		method, template = http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		method, template = http.MethodPost, p.Post
	case *annotations.HttpRule_Put:
		method, template = http.MethodPut, p.Put
	case *annotations.HttpRule_Patch:
		method, template = http.MethodPatch, p.Patch
	case *annotations.HttpRule_Delete:
		method, template = http.MethodDelete, p.Delete
	case *annotations.HttpRule_Custom:
		method, template = p.Custom.GetKind(), p.Custom.GetPath()
	default:
		return errors.New("an HTTP rule without a pattern")
	}
	route := &restRoute{input: input, bodyAll: r.GetBody() == "*"}
	if b := r.GetBody(); b != "" && b != "*" {
		fields, ok := fieldPath(input, b)
		if !ok {
			return fmt.Errorf("body %q is not a field", b)
		}
		route.body = fields
	}
	// Pattern.String() writes a variable without a segment pattern as {name=*}.
	var spelled strings.Builder
	for rest := template; rest != ""; {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			spelled.WriteString(rest)
			break
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return fmt.Errorf("template %q: unclosed variable", template)
		}
		variable := rest[open+1 : open+end]
		name, segments, hasSegments := strings.Cut(variable, "=")
		if !hasSegments {
			segments = "*"
		}
		fields, ok := fieldPath(input, name)
		if !ok {
			return fmt.Errorf("template %q: %q is not a field", template, name)
		}
		route.path = append(route.path, fields)
		spelled.WriteString(rest[:open] + "{" + name + "=" + segments + "}")
		rest = rest[open+end+1:]
	}
	if rs[method] == nil {
		rs[method] = map[string]*restRoute{}
	}
	rs[method][spelled.String()] = route
	return nil
}

// fieldPath resolves a dotted parameter name the way the gateway does (each part by
// its proto name or its JSON name; every part but the last a singular message) to
// the fields it names.
func fieldPath(m protoreflect.MessageDescriptor, name string) ([]protoreflect.FieldDescriptor, bool) {
	var fields []protoreflect.FieldDescriptor
	for part, rest, more := "", name, true; more; {
		part, rest, more = strings.Cut(rest, ".")
		if m == nil {
			return nil, false // the previous part is not a message
		}
		f := m.Fields().ByTextName(part)
		if f == nil {
			f = m.Fields().ByJSONName(part)
		}
		if f == nil {
			return nil, false
		}
		fields = append(fields, f)
		m = nil
		if f.Message() != nil && f.Cardinality() != protoreflect.Repeated {
			m = f.Message()
		}
	}
	return fields, true
}

// check refuses a request whose path parameters or query parameters the gateway
// cannot pass on faithfully; nil when it may go on.
func (rs restRoutes) check(r *http.Request, pathParams map[string]string) error {
	for name, v := range pathParams {
		if !utf8.ValidString(v) {
			return status.Errorf(codes.InvalidArgument, "path parameter %s: not valid UTF-8", name)
		}
	}
	// The gateway has parsed the form itself when it serves a form-encoded POST as
	// the GET of the same path; otherwise the query is all there is.
	values := r.Form
	if values == nil {
		if r.URL.RawQuery == "" {
			return nil
		}
		var err error
		if values, err = url.ParseQuery(r.URL.RawQuery); err != nil {
			return status.Errorf(codes.InvalidArgument, "query string: %v", err)
		}
	}
	if len(values) == 0 {
		return nil
	}
	var route *restRoute
	if p, ok := runtime.HTTPPattern(r.Context()); ok {
		route = rs[r.Method][p.String()]
	}
	for name, vs := range values {
		if route.checkQuery(name, vs) != nil {
			// Name the first bad parameter in order, so that the answer does not
			// depend on map order.
			for _, name := range slices.Sorted(maps.Keys(values)) {
				if err := route.checkQuery(name, values[name]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkQuery checks one query parameter of the route (of an unknown route, whose
// fields are unknown, when route is nil).
func (route *restRoute) checkQuery(name string, values []string) error {
	if !utf8.ValidString(name) {
		return status.Errorf(codes.InvalidArgument, "query parameter %q: name not valid UTF-8", name)
	}
	for _, v := range values {
		if !utf8.ValidString(v) {
			return status.Errorf(codes.InvalidArgument, "query parameter %s: not valid UTF-8", name)
		}
	}
	field, mapKey := name, false
	if strings.HasSuffix(name, "]") { // field[key]=value sets one entry of a map
		if open := strings.IndexByte(name, '['); open > 0 {
			field, mapKey = name[:open], true
		}
	}
	var fields []protoreflect.FieldDescriptor
	ok := route != nil
	if ok {
		fields, ok = fieldPath(route.input, field)
	}
	if !ok || mapKey && !fields[len(fields)-1].IsMap() {
		return status.Errorf(codes.InvalidArgument, "unknown query parameter %q", name)
	}
	switch {
	case route.bodyAll || overlaps(fields, route.body):
		return status.Errorf(codes.InvalidArgument, "query parameter %s: set by the request body, not the query", name)
	case slices.ContainsFunc(route.path, func(p []protoreflect.FieldDescriptor) bool { return overlaps(fields, p) }):
		return status.Errorf(codes.InvalidArgument, "query parameter %s: set by the path, not the query", name)
	}
	return nil
}

// overlaps reports whether one of two field paths is a prefix of the other: setting
// either from the query would change what the other set.
func overlaps(a, b []protoreflect.FieldDescriptor) bool {
	if len(b) == 0 {
		return false
	}
	n := min(len(a), len(b))
	return slices.Equal(a[:n], b[:n])
}

// wholeJSON is the gateway's JSON marshaler. Its decoder refuses a request body
// that goes on after its JSON value: `{"ttl": "60s"} garbage` is not a request.
// It encodes messages with pbjson, which writes what the embedded protojson
// options would at a fraction of the cost.
type wholeJSON struct{ *runtime.JSONPb }

func (m wholeJSON) Marshal(v any) ([]byte, error) {
	if msg, ok := v.(proto.Message); ok {
		return pbjson.Marshal(nil, msg)
	}
	return m.JSONPb.Marshal(v)
}

func (m wholeJSON) NewDecoder(r io.Reader) runtime.Decoder {
	return wholeBody{r: r, opts: m.UnmarshalOptions}
}

// wholeBody reads the body (the HTTP side bounds it) and decodes it as one
// message. protojson refuses a body that is not exactly one JSON value; what it
// refuses is decoded again the gateway's way, whose errors the API has always
// answered with.
type wholeBody struct {
	r    io.Reader
	opts protojson.UnmarshalOptions
}

func (d wholeBody) Decode(v any) error {
	body, err := io.ReadAll(d.r)
	if err != nil {
		return err
	}
	if msg, ok := v.(proto.Message); ok && len(bytes.TrimSpace(body)) > 0 {
		if d.opts.Unmarshal(body, msg) == nil {
			return nil
		}
		proto.Reset(msg)
	}
	return decodeOneValue(json.NewDecoder(bytes.NewReader(body)), d.opts, v)
}

// decodeOneValue is the gateway's decoding, and then an error if anything
// follows the value: io.EOF for an empty body, which the gateway takes for an
// empty request.
func decodeOneValue(dec *json.Decoder, opts protojson.UnmarshalOptions, v any) error {
	d := runtime.DecoderWrapper{Decoder: dec, UnmarshalOptions: opts}
	if err := d.Decode(v); err != nil {
		return err
	}
	var syntax *json.SyntaxError
	switch _, err := d.Token(); {
	case errors.Is(err, io.EOF):
		return nil
	case err == nil, errors.As(err, &syntax):
		return errors.New("request body: unexpected data after the JSON value")
	default:
		return err
	}
}
