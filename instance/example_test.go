package instance_test

import (
	"fmt"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/instance"
)

func ExampleCache() {
	cache := instance.NewCache()
	defer cache.Stop()

	cache.Apply([]instance.Change{
		{Key: "/svc/b", Value: "10.0.0.2:80"},
		{Key: "/svc/a", Value: "10.0.0.1:80"},
	})

	events := make(chan sd.Event, 1)
	cache.Register(events) // receives the current state before returning
	fmt.Println((<-events).Instances)

	cache.Apply([]instance.Change{{Key: "/svc/a", Delete: true}})
	fmt.Println((<-events).Instances)
	// Output:
	// [10.0.0.1:80 10.0.0.2:80]
	// [10.0.0.2:80]
}

func ExampleParse() {
	inst, err := instance.Parse(`{"id":"app-1","version":"v2","address":"10.0.0.1:9000","metadata":{"zone":"a"}}`)
	fmt.Println(inst.ID, inst.Version, inst.Address, inst.Metadata["zone"], inst.EffectiveWeight(), err)

	_, err = instance.Parse(`{"address":`)
	fmt.Println(err != nil)
	// Output:
	// app-1 v2 10.0.0.1:9000 a 1 <nil>
	// true
}
