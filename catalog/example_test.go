package catalog_test

import (
	"fmt"

	"github.com/etcdsd/etcdsd/catalog"
)

// The examples that need a running etcd (the whole job, and Watch) are in
// the integration module, integration/examples/catalog.

func ExampleEffective() {
	inst := catalog.Instance{Name: "app", ID: "a-1", Address: "10.0.0.1:9000", Weight: 1}
	props := []catalog.Property{
		{Service: "app", ID: "a-1", Name: catalog.PropWeight, Value: "5"},
		{Service: "app", ID: "a-2", Name: catalog.PropDisabled, Value: "true"},
	}
	eff, inRotation := catalog.Effective(inst, props)
	fmt.Println(eff.Weight, inRotation)

	inst.ID = "a-2"
	_, inRotation = catalog.Effective(inst, props)
	fmt.Println(inRotation)
	// Output:
	// 5 true
	// false
}
