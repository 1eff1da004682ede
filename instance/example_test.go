package instance_test

import (
	"fmt"

	"github.com/etcdsd/etcdsd/instance"
)

func ExampleParse() {
	inst, err := instance.Parse(`{"id":"app-1","version":"v2","address":"10.0.0.1:9000","metadata":{"zone":"a"}}`)
	fmt.Println(inst.ID, inst.Version, inst.Address, inst.Metadata["zone"], inst.EffectiveWeight(), err)

	_, err = instance.Parse(`{"address":`)
	fmt.Println(err != nil)
	// Output:
	// app-1 v2 10.0.0.1:9000 a 1 <nil>
	// true
}
