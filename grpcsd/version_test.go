package grpcsd

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"
)

func TestVersionFromContext(t *testing.T) {
	bg := context.Background()
	md := func(kv ...string) context.Context { return metadata.AppendToOutgoingContext(bg, kv...) }
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		want   string
		wantOK bool
	}{
		{"nothing", bg, "", false},
		{"typed", WithVersion(bg, "v2"), "v2", true},
		{"typed empty means any", WithVersion(md(MetadataKey, "v1"), ""), "", false},
		{"metadata", md(MetadataKey, "v1"), "v1", true},
		{"metadata key is case-insensitive", md("X-Etcdsd-Version", "v1"), "v1", true},
		{"first non-empty metadata value", md(MetadataKey, "", MetadataKey, "v3"), "v3", true},
		{"other metadata only", md("x-other", "v1"), "", false},
		{"typed wins over metadata", WithVersion(md(MetadataKey, "v1"), "v2"), "v2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := VersionFromContext(tc.ctx)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("VersionFromContext = %q, %v; want %q, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
