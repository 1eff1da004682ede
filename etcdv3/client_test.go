//lint:file-ignore SA1019 these tests check that NewClient recognises the deprecated options go-kit programs pass

package etcdv3

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// blockingOptions calls the constructors in a function of its own, where
// they may be inlined differently than in blocks' test below.
func blockingOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithBlock(), grpc.WithReturnConnectionError()}
}

func TestBlocksRecognisesGRPCWithBlock(t *testing.T) {
	inClosure := func() []grpc.DialOption { return []grpc.DialOption{grpc.WithBlock(), grpc.WithReturnConnectionError()} }()
	for i, o := range append(append(blockingOptions(), inClosure...), grpc.WithBlock(), grpc.WithReturnConnectionError()) {
		if !blocks([]grpc.DialOption{grpc.WithUserAgent("x"), o}) {
			t.Errorf("option %d (WithBlock or WithReturnConnectionError) not recognised", i)
		}
	}
	others := []grpc.DialOption{
		grpc.WithUserAgent("x"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithIdleTimeout(time.Second),
		grpc.WithDisableRetry(),
		nil,
	}
	if blocks(others) {
		t.Error("options without WithBlock taken as blocking")
	}
}
