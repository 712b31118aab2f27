// Command etcd is the etcd server built from go.etcd.io/etcd/server/v3, used
// as the storage of the local kube-apiserver in tests and in the demo.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
