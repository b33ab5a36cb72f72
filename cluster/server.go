package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a NATS server with JetStream embedded in this process,
// listening on 127.0.0.1 on a random port, its store in a temporary
// directory that Close removes. It is the default for one machine and for
// tests; production runs nats-server itself and gives Config.URLs.
type Server struct {
	s    *server.Server
	dir  string
	once sync.Once
	err  error
}

// StartServer starts one embedded server and returns once it takes
// connections.
func StartServer() (*Server, error) {
	return startServer("", 0, nil, nil)
}

// StartServers starts n embedded servers forming one JetStream cluster
// (routes on 127.0.0.1, random ports) and returns once every server takes
// connections and the JetStream meta leader counts all of them online. On failure it
// stops those it started.
func StartServers(n int) ([]*Server, error) {
	if n < 1 {
		return nil, fmt.Errorf("cluster: StartServers(%d): want at least 1", n)
	}
	if n == 1 {
		s, err := StartServer()
		if err != nil {
			return nil, err
		}
		return []*Server{s}, nil
	}
	ports := make([]int, n)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	routes := make([]*url.URL, n)
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: "127.0.0.1:" + strconv.Itoa(p)}
	}
	var out []*Server
	fail := func(err error) ([]*Server, error) {
		for _, s := range out {
			err = errors.Join(err, s.Close())
		}
		return nil, err
	}
	for i := range n {
		s, err := startServer("mproc", ports[i], routes, nil)
		if err != nil {
			return fail(err)
		}
		out = append(out, s)
	}
	// Ready once the meta leader counts every server online with current
	// stats: before that, placing an R3 stream fails ("peer offline").
	for deadline := time.Now().Add(20 * time.Second); ; {
		for _, s := range out {
			if s.s.JetStreamIsLeader() && len(s.s.JetStreamClusterPeers()) == n {
				return out, nil
			}
		}
		if time.Now().After(deadline) {
			return fail(errors.New("cluster: embedded servers formed no JetStream cluster of every server in 20 s"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServer starts one server; tweak, if not nil, changes its options
// (the tests' authorization).
func startServer(clusterName string, routePort int, routes []*url.URL, tweak func(*server.Options)) (*Server, error) {
	dir, err := os.MkdirTemp("", "mproc-nats-")
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded server store: %w", err)
	}
	opts := &server.Options{
		Host:                   "127.0.0.1",
		Port:                   server.RANDOM_PORT,
		JetStream:              true,
		StoreDir:               dir,
		NoLog:                  true,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
		MaxPayload:             embeddedMaxPayload,
	}
	if clusterName != "" {
		opts.ServerName = "mproc-" + strconv.Itoa(routePort)
		opts.Cluster = server.ClusterOpts{Name: clusterName, Host: "127.0.0.1", Port: routePort}
		opts.Routes = routes
	}
	if tweak != nil {
		tweak(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cluster: embedded server: %w", err), os.RemoveAll(dir))
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, errors.Join(errors.New("cluster: embedded server not ready in 10 s"), os.RemoveAll(dir))
	}
	return &Server{s: s, dir: dir}, nil
}

// embeddedMaxPayload is the embedded server's message limit: NATS's
// default of 1 MiB. Messages are cut to fit whatever the server says.
const embeddedMaxPayload = 1 << 20

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cluster: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL is the address clients and nodes connect to.
func (s *Server) URL() string { return s.s.ClientURL() }

// Close shuts the server down, waits for it, and removes its store. It is
// idempotent; it is also how tests and the demo kill one server of a
// cluster.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.s.Shutdown()
		s.s.WaitForShutdown()
		s.err = os.RemoveAll(s.dir)
	})
	return s.err
}
