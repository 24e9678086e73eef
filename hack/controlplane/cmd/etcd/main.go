// Command etcd runs a single-member etcd server for the local development cluster.
//
// etcd's own main package cannot be installed from the module proxy (its go.mod uses local
// replace directives), so this wrapper embeds the same server library at the version that
// Kubernetes selects. Only the handful of settings a loopback, single-member cluster needs are
// exposed as flags.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/embed"
)

type options struct {
	name         string
	dataDir      string
	clientURL    string
	peerURL      string
	metricsURL   string
	logLevel     string
	quotaBytes   int64
	unsafeNoSync bool
	readyTimeout time.Duration
	printVersion bool
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.name, "name", "default", "member name")
	flag.StringVar(&o.dataDir, "data-dir", "", "directory for the member's data (required)")
	flag.StringVar(&o.clientURL, "client-url", "http://127.0.0.1:2379", "client URL to listen on and advertise")
	flag.StringVar(&o.peerURL, "peer-url", "http://127.0.0.1:2380", "peer URL to listen on and advertise")
	flag.StringVar(&o.metricsURL, "metrics-url", "", "optional extra URL serving /metrics and /health")
	flag.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	flag.Int64Var(&o.quotaBytes, "quota-backend-bytes", 2<<30, "backend size quota in bytes")
	flag.BoolVar(&o.unsafeNoSync, "unsafe-no-fsync", false, "skip fsync (disposable clusters only)")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 60*time.Second, "how long to wait for readiness")
	flag.BoolVar(&o.printVersion, "version", false, "print the embedded etcd version and exit")
	flag.Parse()
	return o
}

func mustURL(raw string) url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: invalid URL %q: %v\n", raw, err)
		os.Exit(2)
	}
	return *u
}

func main() {
	o := parseFlags()
	if o.printVersion {
		fmt.Printf("etcd Version: %s\nAPI Version: %s\n", version.Version, version.APIVersion)
		return
	}
	if o.dataDir == "" {
		fmt.Fprintln(os.Stderr, "etcd: --data-dir is required")
		os.Exit(2)
	}

	cfg := embed.NewConfig()
	cfg.Name = o.name
	cfg.Dir = o.dataDir
	client, peer := mustURL(o.clientURL), mustURL(o.peerURL)
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	if o.metricsURL != "" {
		cfg.ListenMetricsUrls = []url.URL{mustURL(o.metricsURL)}
	}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Logger = "zap"
	cfg.LogLevel = o.logLevel
	cfg.LogOutputs = []string{"stderr"}
	cfg.QuotaBackendBytes = o.quotaBytes
	cfg.UnsafeNoFsync = o.unsafeNoSync
	// etcd's own command line fills this in; NewConfig leaves it at zero, which would log
	// every single request as "expensive".
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration

	// Install the signal handler before starting so a SIGTERM that arrives during startup
	// still results in a clean close rather than the Go runtime's default exit.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: start failed: %v\n", err)
		os.Exit(1)
	}

	select {
	case <-srv.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "etcd %s ready, serving clients on %s\n", version.Version, o.clientURL)
	case <-time.After(o.readyTimeout):
		srv.Server.Stop()
		srv.Close()
		fmt.Fprintf(os.Stderr, "etcd: not ready after %s\n", o.readyTimeout)
		os.Exit(1)
	case sig := <-signals:
		srv.Close()
		fmt.Fprintf(os.Stderr, "etcd: received %s during startup, stopped\n", sig)
		return
	}

	select {
	case sig := <-signals:
		fmt.Fprintf(os.Stderr, "etcd: received %s, shutting down\n", sig)
		srv.Close()
	case err := <-srv.Err():
		srv.Close()
		fmt.Fprintf(os.Stderr, "etcd: server error: %v\n", err)
		os.Exit(1)
	}
}
