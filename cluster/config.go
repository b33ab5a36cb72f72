package cluster

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mproc/mproc/pool"
)

// Config tunes a client pool made by Connect. A nil *Config means every
// default: an embedded server and one node process on this machine.
type Config struct {
	// URLs lists the NATS servers to connect to, passed to nats.Connect
	// untouched. Empty means: start an embedded server with JetStream
	// (store in a temporary directory), stopped and removed by Close.
	URLs []string

	// Options are passed to nats.Connect after the package's own
	// (reconnect forever): credentials (nats.UserCredentials,
	// nats.UserInfo, nats.Token, nats.Nkey), TLS (nats.Secure,
	// nats.RootCAs, nats.ClientCert) and the like.
	Options []nats.Option

	// Namespace prefixes every subject, the stream and the consumer, so
	// that pools of different programs on one NATS never take each
	// other's work: nodes serve the namespace they were started with.
	// Letters, digits, '-' and '_' only. Empty means "mproc".
	Namespace string

	// Workers is the number of virtual worker slots: each keeps at most
	// two chunks in the stream or on a node at a time, and Map's guided
	// chunking divides the work by it. Zero means 16; set it to about
	// the total number of workers of the nodes.
	Workers int

	// Nodes is the number of node processes Connect starts on this
	// machine (this binary re-executed in node mode, see Serve), each
	// with NodeWorkers workers (unpinned when there are several, so that
	// they do not share CPUs); Close stops them. Zero means 1 with the
	// embedded server and none with URLs.
	Nodes int

	// NodeWorkers is the worker count of the nodes Connect starts. Zero
	// means one per CPU of this machine.
	NodeWorkers int

	// Retries is how many times a chunk whose node died or stopped
	// answering is delivered again, as pool.Config.Retries: the
	// consumer's MaxDeliver is Retries+1. Zero (the default) means never:
	// the chunk's items fail with a *pool.WorkerError. Negative is an
	// error. Unlike a local pool's, a redelivered chunk runs again whether
	// or not its function is Idempotent: JetStream cannot tell which of
	// its items had begun, so only set Retries for idempotent tasks.
	Retries int

	// AckWait is how long a node may hold a chunk without a sign of life
	// (nodes send InProgress every AckWait/3 while it runs) before
	// JetStream delivers it to another node. Zero means 30 s.
	AckWait time.Duration

	// Replicas is the stream's replica count: 3 on a 3-server cluster
	// survives the loss of one server. Zero means 1.
	Replicas int

	// Memory keeps the stream in memory instead of files: faster, lost
	// if every replica's server restarts.
	Memory bool
}

// nameOK reports whether s is 1 to 64 letters, digits, '-' or '_': a
// namespace or client name that is one NATS subject token. A loop, not a
// regexp: compiling one at package init cost every worker process of a
// binary that imports this package a tenth of a millisecond at start.
func nameOK(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

func (c *Config) withDefaults() (Config, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "mproc"
	}
	if !nameOK(cfg.Namespace) {
		return cfg, fmt.Errorf("cluster: Config.Namespace %q: want 1 to 64 letters, digits, '-' or '_'", cfg.Namespace)
	}
	if cfg.Workers < 0 || cfg.Nodes < 0 || cfg.NodeWorkers < 0 || cfg.Replicas < 0 || cfg.AckWait < 0 {
		return cfg, fmt.Errorf("cluster: negative Config field in %+v", cfg)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 16
	}
	if cfg.Nodes == 0 && len(cfg.URLs) == 0 {
		cfg.Nodes = 1
	}
	if cfg.Retries < 0 {
		return cfg, fmt.Errorf("cluster: Retries %d is negative; 0 means a chunk is never delivered again", cfg.Retries)
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	return cfg, nil
}

// NodeConfig tunes a node (Serve).
type NodeConfig struct {
	// URLs and Options: as in Config. URLs must not be empty: a node
	// serves an existing server.
	URLs    []string
	Options []nats.Option

	// Namespace: as in Config; a node serves exactly one.
	Namespace string

	// Name names this node in errors (pool.TaskError.Node,
	// pool.WorkerError.Node). Empty means the host name and the pid.
	Name string

	// Pool configures the node's local pool (nil: one worker per core,
	// pinned). Its TaskTimeout applies on the node: a task that runs
	// longer has its local worker killed and replaced, fails with
	// pool.ErrTaskTimeout, and its message is terminated.
	Pool *pool.Config
}

// names are a namespace's subjects and JetStream names.
type names struct {
	ns       string
	stream   string // work-queue stream of task messages
	consumer string // the durable pull consumer all nodes share
	tasks    string // subjects of the stream: <ns>.task.<client>.<slot>
	cancel   string // <ns>.cancel.<client>: job u64
}

func namesFor(ns string) names {
	return names{
		ns:       ns,
		stream:   "MPROC_" + ns,
		consumer: "nodes",
		tasks:    ns + ".task.>",
		cancel:   ns + ".cancel.*",
	}
}

func (n names) task(client string, slot int) string {
	return fmt.Sprintf("%s.task.%s.%d", n.ns, client, slot)
}
func (n names) result(client string, slot int) string {
	return fmt.Sprintf("%s.res.%s.%d", n.ns, client, slot)
}
func (n names) alive(client string) string    { return n.ns + ".alive." + client }
func (n names) cancelOf(client string) string { return n.ns + ".cancel." + client }

// isAck reports whether subj is an ack subject of this namespace's
// consumer, as JetStream writes them:
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>
//	$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>[.<token>]
//
// A client publishes an ack only to such a subject, whatever a node sent.
func (n names) isAck(subj string) bool {
	if len(subj) > 512 || strings.ContainsAny(subj, " \t\r\n*>") {
		return false
	}
	tok := strings.Split(subj, ".")
	if slices.Contains(tok, "") || tok[0] != "$JS" || tok[1] != "ACK" {
		return false
	}
	at := 2 // the stream's token
	switch {
	case len(tok) == 9:
	case len(tok) == 11 || len(tok) == 12:
		at = 4
	default:
		return false
	}
	return tok[at] == n.stream && tok[at+1] == n.consumer
}

// hdrAck is the header of a part's last result message that carries the
// part's ack subject: the client acks once it holds the results.
const hdrAck = "Mproc-Ack"

func (n names) maxDeliveries() string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + n.stream + "." + n.consumer
}
