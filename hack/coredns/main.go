// Command coredns is the local cluster's DNS server: CoreDNS with only the plugins a
// single-node development cluster needs, so it builds from Go modules in a few minutes.
//
// CoreDNS registers each plugin in its package's init function, so importing a plugin package
// is what makes it available to the Corefile; the full upstream build imports dozens (cloud
// DNS providers, etcd, tracing) that this cluster never uses.
package main

import (
	"github.com/coredns/coredns/coremain"

	// The Corefile written by hack/clusterkit/dns.py uses exactly these.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
