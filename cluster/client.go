package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/mproc/mproc/internal/bridge"
	"github.com/mproc/mproc/pool"
)

// Connect returns a pool whose workers are the nodes serving cfg's
// namespace, wherever they run; pool.Map, Apply, ApplyAsync, MapAsync,
// Imap and ImapUnordered take it unchanged. It creates (or updates to
// cfg) the namespace's stream and consumer, so the client's Config owns
// their settings. It starts cfg.Nodes node processes of this binary, and
// an embedded server without cfg.URLs. Close waits for the calls, then
// stops what Connect started; ctx bounds only the connection set-up.
func Connect(ctx context.Context, cfg *Config) (*pool.Pool, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cl := &client{cfg: c, n: namesFor(c.Namespace), id: nuid.Next(), seqs: make(map[uint64]seqRef)}
	p, err := cl.open(ctx)
	if err != nil {
		return nil, errors.Join(err, cl.shutdown())
	}
	return p, nil
}

// client is one Connect's connection and bookkeeping.
type client struct {
	cfg     Config
	n       names
	id      string // unique per client: its subjects' token
	srv     *Server
	nodes   []*nodeProc
	nc      *nats.Conn
	js      jetstream.JetStream
	subs    []*nats.Subscription
	maxPart int // bytes of one task or result message
	segs    *segments

	mu    sync.Mutex
	links map[int]*slotLink // slot -> its current link
	seqs  map[uint64]seqRef // stream sequence of a message -> its part
	live  int               // virtual workers started and not closed

	shutOnce sync.Once
	shutErr  error
	done     bool
}

// seqRef names the part of a chunk stored under a stream sequence.
type seqRef struct {
	l            *slotLink
	job          uint64
	first, count int
}

func (cl *client) open(ctx context.Context) (*pool.Pool, error) {
	urls := cl.cfg.URLs
	if len(urls) == 0 {
		s, err := StartServer()
		if err != nil {
			return nil, err
		}
		cl.srv = s
		urls = []string{s.URL()}
	}
	opts := append([]nats.Option{nats.Name("mproc client " + cl.id), nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, cl.cfg.Options...)
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect: %w", err)
	}
	cl.nc = nc
	cl.maxPart = int(nc.MaxPayload()) - partHeadroom
	if cl.maxPart < 4<<10 {
		return nil, fmt.Errorf("cluster: server max payload of %d bytes is too small", nc.MaxPayload())
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	cl.js = js
	if err := cl.ensureStream(ctx); err != nil {
		return nil, err
	}
	if err := cl.openSegments(ctx); err != nil {
		return nil, err
	}
	cl.links = make(map[int]*slotLink)
	for subj, h := range map[string]nats.MsgHandler{
		cl.n.ns + ".res." + cl.id + ".*": cl.onResult,
		cl.n.alive(cl.id):                func(m *nats.Msg) { m.Respond(nil) },
		cl.n.maxDeliveries():             cl.onMaxDeliveries,
	} {
		sub, err := nc.Subscribe(subj, h)
		if err != nil {
			return nil, fmt.Errorf("cluster: subscribe %s: %w", subj, err)
		}
		sub.SetPendingLimits(-1, -1) // bounded by the chunks in flight
		cl.subs = append(cl.subs, sub)
	}
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		return nil, fmt.Errorf("cluster: subscribe: %w", err)
	}
	for range cl.cfg.Nodes {
		np, err := startNode(urls, cl.cfg.Namespace, cl.cfg.NodeWorkers, cl.cfg.Nodes > 1)
		if err != nil {
			return nil, err
		}
		cl.nodes = append(cl.nodes, np)
	}
	p, err := bridge.NewPool(cl.cfg.Workers, cl)
	if err != nil {
		return nil, err
	}
	return p.(*pool.Pool), nil
}

// partHeadroom leaves room in a message for its subject and headers.
const partHeadroom = 1 << 10

func (cl *client) ensureStream(ctx context.Context) error {
	storage := cl.storage()
	_, err := cl.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cl.n.stream,
		Description: "mproc task messages of namespace " + cl.n.ns,
		Subjects:    []string{cl.n.tasks},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     storage,
		Replicas:    cl.cfg.Replicas,
		Duplicates:  dupWindow,
	})
	if err != nil {
		return fmt.Errorf("cluster: create stream %s: %w", cl.n.stream, err)
	}
	_, err = cl.js.CreateOrUpdateConsumer(ctx, cl.n.stream, jetstream.ConsumerConfig{
		Durable:       cl.n.consumer,
		Description:   "mproc nodes of namespace " + cl.n.ns,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cl.cfg.AckWait,
		MaxDeliver:    cl.cfg.Retries + 1,
		MaxAckPending: -1,
		FilterSubject: cl.n.tasks,
		Replicas:      cl.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("cluster: create consumer %s: %w", cl.n.consumer, err)
	}
	return nil
}

func (cl *client) storage() jetstream.StorageType {
	if cl.cfg.Memory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// Start gives pool slot slot a new virtual worker (bridge.Backend).
func (cl *client) Start(slot int) (bridge.Proc, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.done {
		return nil, pool.ErrClosed
	}
	if cl.nc.IsClosed() {
		return nil, fmt.Errorf("cluster: %w", nats.ErrConnectionClosed)
	}
	l := newSlotLink(cl, slot)
	cl.links[slot] = l
	cl.live++
	return l, nil
}

// onResult takes a node's result (or begin) message for one of the slots.
// It answers a request, so that the node knows the client holds it; the
// last result message of a part instead names the part's ack subject,
// and the client acks the part once it holds the results (a part whose
// link is gone was settled already, so it is acked too). A message it
// cannot hold is neither answered nor acked: the part is delivered again.
func (cl *client) onResult(m *nats.Msg) {
	tok := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	slot, err := strconv.Atoi(tok)
	cl.mu.Lock()
	l := cl.links[slot]
	cl.mu.Unlock()
	held := err == nil && (l == nil || l.feed(m.Data))
	if !held {
		return
	}
	if ack := m.Header.Get(hdrAck); ack != "" && cl.n.isAck(ack) {
		cl.nc.Publish(ack, ackBody)
	}
	if m.Reply != "" {
		m.Respond(nil)
	}
}

// ackBody is JetStream's acknowledgement.
var ackBody = []byte("+ACK")

// maxAdvisory bounds the JSON of an advisory this client decodes.
const maxAdvisory = 16 << 10

// onMaxDeliveries fails the items of a part that JetStream stopped
// delivering (MaxDeliver): its nodes died or hung with it.
func (cl *client) onMaxDeliveries(m *nats.Msg) {
	if len(m.Data) > maxAdvisory {
		return
	}
	var adv struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries uint64 `json:"deliveries"`
	}
	if json.Unmarshal(m.Data, &adv) != nil {
		return
	}
	cl.mu.Lock()
	ref, ok := cl.seqs[adv.StreamSeq]
	delete(cl.seqs, adv.StreamSeq)
	cl.mu.Unlock()
	if !ok {
		return // another client's message
	}
	ref.l.lost(ref.job, ref.first, ref.count, adv.Deliveries)
	// A work-queue stream keeps a message nobody acked: remove it.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if s, err := cl.js.Stream(ctx, cl.n.stream); err == nil {
			s.DeleteMsg(ctx, adv.StreamSeq)
		}
	}()
}

// dupWindow is how long the stream remembers a message id: a publish
// retried within it lands once.
const dupWindow = 2 * time.Minute

// publishTry bounds one publish attempt; publishPatience bounds all of a
// part's attempts, short of the duplicate window so that a retry never
// stores a part twice. A variable so that a test can wait less.
const publishTry = 5 * time.Second

var publishPatience = dupWindow - 2*publishTry

// errPublishGaveUp is what publish returns when no attempt was acked
// within publishPatience.
var errPublishGaveUp = errors.New("the broker acknowledged no attempt to store it")

// publish stores one task part in the stream, retrying while the
// cluster fails over; the message id makes a retried publish land once.
// It stops when ctx ends, the connection is closed for good, the part is
// over the server's limit, or after publishPatience.
func (cl *client) publish(ctx context.Context, subj, id string, data []byte) (uint64, error) {
	deadline := time.Now().Add(publishPatience)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		pctx, cancel := context.WithTimeout(ctx, min(publishTry, time.Until(deadline)))
		ack, err := cl.js.PublishMsg(pctx, &nats.Msg{Subject: subj, Data: data}, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return ack.Sequence, nil
		}
		if ctx.Err() != nil || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrMaxPayload) {
			return 0, fmt.Errorf("cluster: publish task: %w", err)
		}
		if time.Until(deadline) <= wait {
			return 0, fmt.Errorf("cluster: publish task: %w within %v (last: %w)", errPublishGaveUp, publishPatience, err)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, fmt.Errorf("cluster: publish task: %w", ctx.Err())
		}
	}
}

// cancelJob tells the nodes to drop what they hold of job.
func (cl *client) cancelJob(job uint64) {
	cl.nc.Publish(cl.n.cancelOf(cl.id), binary.LittleEndian.AppendUint64(nil, job))
}

func (cl *client) remember(seq uint64, r seqRef) {
	cl.mu.Lock()
	cl.seqs[seq] = r
	cl.mu.Unlock()
}

func (cl *client) forget(seqs []uint64) {
	cl.mu.Lock()
	for _, s := range seqs {
		delete(cl.seqs, s)
	}
	cl.mu.Unlock()
}

// final counts a virtual worker closed; it reports whether none is left,
// so that its Close shuts the client down. The pool replaces a worker only
// after a broken message, which the link never produces; otherwise every
// worker ends together, at Close (a stop message each) or Terminate.
func (cl *client) final() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.live--
	if cl.live > 0 || cl.done {
		return false
	}
	cl.done = true
	return true
}

// shutdown releases what Connect took: the subscriptions and connection,
// the node processes it started (asked to drain first), and the embedded
// server with its store.
func (cl *client) shutdown() error {
	cl.shutOnce.Do(func() { cl.shutErr = cl.release() })
	return cl.shutErr
}

func (cl *client) release() error {
	var errs []error
	if cl.segs != nil {
		cl.segs.close()
	}
	for _, s := range cl.subs {
		s.Unsubscribe()
	}
	for _, np := range cl.nodes {
		errs = append(errs, np.stop())
	}
	if cl.nc != nil {
		cl.nc.Close()
	}
	if cl.srv != nil {
		errs = append(errs, cl.srv.Close())
	}
	return errors.Join(errs...)
}

var _ bridge.Backend = (*client)(nil)

// errGone is what a virtual worker's link reports once its client is
// shut down.
var errGone = fmt.Errorf("cluster: client closed: %w", os.ErrClosed)
