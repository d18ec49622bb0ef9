package server

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// encodedMessage is a message marshalled already, sent by the public server's
// codec as it is: a revocation event is marshalled once for all its subscribers.
type encodedMessage []byte

// passthroughCodec is the proto codec, except that it sends an encodedMessage's
// bytes unchanged. The bytes are shared and only read, as a SliceBuffer's are.
type passthroughCodec struct{ encoding.CodecV2 }

func newPassthroughCodec() passthroughCodec {
	return passthroughCodec{encoding.GetCodecV2(proto.Name)}
}

func (c passthroughCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(encodedMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	}
	return c.CodecV2.Marshal(v)
}
