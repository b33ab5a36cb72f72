package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mproc/mproc/internal/bridge"
	"github.com/mproc/mproc/pool"
)

// Serve runs this process as a node of cfg's namespace until ctx ends:
// it starts a local pool (cfg.Pool), waits for the namespace's consumer
// (a client creates it), and runs the chunks it pulls on the local pool,
// a few more at a time than it has workers. When ctx ends it stops
// pulling, finishes and acknowledges what it holds (a drain), closes the
// local pool and returns. It returns an error if it cannot connect or
// start its pool, or if the connection closes for good.
func Serve(ctx context.Context, cfg *NodeConfig) error {
	if cfg == nil || len(cfg.URLs) == 0 {
		return errors.New("cluster: Serve needs NodeConfig.URLs")
	}
	ns := cfg.Namespace
	if ns == "" {
		ns = "mproc"
	}
	if !nameOK(ns) {
		return fmt.Errorf("cluster: NodeConfig.Namespace %q: want 1 to 64 letters, digits, '-' or '_'", ns)
	}
	name := cfg.Name
	if name == "" {
		host, _ := os.Hostname()
		name = host + ":" + strconv.Itoa(os.Getpid())
	}
	if len(name) > 255 {
		name = name[:255]
	}
	if !hookFetch() {
		return errors.New("cluster: Serve inside a pool worker: shared inputs could not be resolved")
	}
	local, err := pool.New(cfg.Pool)
	if err != nil {
		return fmt.Errorf("cluster: node pool: %w", err)
	}
	n := &node{
		n: namesFor(ns), name: name, local: local, workers: len(local.Stats()),
		alive: make(map[string]aliveEntry), cancelled: make(map[jobKey]time.Time),
		running: make(map[jobKey][]*partRun),
	}
	err = n.serve(ctx, cfg)
	return errors.Join(err, local.Close())
}

type node struct {
	n       names
	name    string
	local   *pool.Pool
	workers int
	nc      *nats.Conn
	subs    []*nats.Subscription
	unhook  func() // stops resolving segments for this process
	stop    context.CancelCauseFunc
	limit   int           // bytes of one result message
	ackWait time.Duration // the consumer's

	mu        sync.Mutex
	alive     map[string]aliveEntry // client -> last liveness check
	cancelled map[jobKey]time.Time  // cancel messages for jobs not running here
	running   map[jobKey][]*partRun
}

// partRun is one task part running on this node.
type partRun struct{ cancel context.CancelFunc }

type jobKey struct {
	client string
	job    uint64
}

type aliveEntry struct {
	alive bool
	at    time.Time
}

// Bounds on the node's memory of clients and cancelled jobs: a flood of
// cancel messages or client ids costs at most this many entries.
const (
	maxRemembered = 4096
	aliveFor      = time.Second // a liveness answer is trusted this long
)

func (n *node) serve(ctx context.Context, cfg *NodeConfig) error {
	opts := append([]nats.Option{nats.Name("mproc node " + n.name), nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, cfg.Options...)
	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	if err != nil {
		return fmt.Errorf("cluster: node connect: %w", err)
	}
	defer nc.Close()
	n.nc = nc
	n.limit = int(nc.MaxPayload()) - partHeadroom
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("cluster: node jetstream: %w", err)
	}
	sub, err := nc.Subscribe(n.n.cancel, n.onCancel)
	if err != nil {
		return fmt.Errorf("cluster: node subscribe: %w", err)
	}
	defer sub.Unsubscribe()

	// The client owns the stream and consumer: wait for them.
	var cons jetstream.Consumer
	for {
		if cons, err = js.Consumer(ctx, n.n.stream, n.n.consumer); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := n.openNodeSegments(ctx, js); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() {
		n.unhook()
		for _, s := range n.subs {
			s.Unsubscribe()
		}
	}()
	n.ackWait = 30 * time.Second
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		n.ackWait = info.Config.AckWait
	}

	// Hold at most two chunks per local worker (one running, one queued,
	// as the pool does per worker); the rest stay in the stream for other
	// nodes. Each of that many pullers keeps one pull request waiting, so
	// a part published to an idle node is delivered at once.
	capacity := 2 * n.workers
	// A node whose local pool cannot run parts any more stops pulling.
	ctx, n.stop = context.WithCancelCause(ctx)
	defer n.stop(nil)
	// Chunks run on a context of their own: a drain lets them finish.
	work, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	var wg sync.WaitGroup
	for range capacity {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.pull(ctx, work, cons)
		}()
	}
	wg.Wait()
	// The last results were published, not requested: see them out
	// before the connection closes.
	nc.FlushTimeout(time.Second)
	if nc.IsClosed() {
		return errors.New("cluster: node connection closed")
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// pull runs one part at a time until ctx ends; a part delivered after
// that still runs (a drain).
func (n *node) pull(ctx, work context.Context, cons jetstream.Consumer) {
	for ctx.Err() == nil && !n.nc.IsClosed() {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond): // failing over
			}
			continue
		}
		for m := range batch.Messages() {
			n.handle(work, m)
		}
	}
}

// handle runs one task part and settles its message: the client acks it
// once it holds the results (handle acks only if the last result could
// not carry the ack subject), handle Terms it when it must not run again
// (malformed, timed out, cancelled, its client gone) and Naks it when this
// node cannot run it now.
func (n *node) handle(ctx context.Context, m jetstream.Msg) {
	client, slot, ok := n.parseSubject(m.Subject())
	if !ok {
		m.TermWithReason("mproc: bad subject")
		return
	}
	data := m.Data()
	job, _, _, err := bridge.ParseTask(data)
	if err != nil {
		m.TermWithReason("mproc: " + err.Error())
		return
	}
	key := jobKey{client, job}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run := &partRun{cancel: cancel}
	n.mu.Lock()
	_, dropped := n.cancelled[key]
	if !dropped {
		// Parts of one chunk may run here side by side: a cancel
		// reaches them all.
		n.running[key] = append(n.running[key], run)
	}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if rest := slices.DeleteFunc(n.running[key], func(r *partRun) bool { return r == run }); len(rest) > 0 {
			n.running[key] = rest
		} else {
			delete(n.running, key)
		}
		n.mu.Unlock()
	}()
	if dropped || !n.clientAlive(client) {
		m.TermWithReason("mproc: call cancelled or caller gone")
		return
	}
	res := n.n.result(client, slot)
	begin := binary.LittleEndian.AppendUint32([]byte{kindBegin}, uint32(os.Getpid()))
	begin = binary.LittleEndian.AppendUint64(begin, job)
	n.nc.Publish(res, append(begin, n.name...))

	// Heartbeat: tell JetStream the part is alive, and notice a caller
	// that died meanwhile.
	hbDone := make(chan struct{})
	defer close(hbDone)
	go func() {
		t := time.NewTicker(max(n.ackWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.InProgress()
				if !n.clientAlive(client) {
					cancel()
				}
			case <-hbDone:
				return
			}
		}
	}()
	// Every result message but the last is a request the client answers
	// once it holds it; the last carries the part's ack subject, and the
	// client acks the part itself once it has its results: one hop less,
	// and this puller is free as soon as the results are out.
	var last []byte
	outcome, err := bridge.RunMessage(ctx, n.local, data, n.name, n.limit, func(msg []byte) error {
		if last != nil {
			if err := n.reply(ctx, client, res, last); err != nil {
				return err
			}
		}
		last = msg
		return nil
	})
	if err == nil && last != nil {
		if outcome == bridge.Done {
			if ack := m.Reply(); ack != "" {
				out := nats.NewMsg(res)
				out.Header.Set(hdrAck, ack)
				out.Data = last
				if n.nc.PublishMsg(out) == nil {
					return // the client acks
				}
			}
		}
		err = n.reply(ctx, client, res, last)
	}
	switch {
	case errors.Is(err, bridge.ErrMalformed):
		m.TermWithReason("mproc: " + err.Error())
	case errors.Is(err, errCallerGone) || (err == nil && outcome != bridge.Done):
		m.Term()
	case errors.Is(err, errReply):
		m.Nak() // the caller is alive but unreachable now: run it again later
	case err != nil:
		// This node's pool cannot run it (no worker left): let another
		// node have it, and stop pulling.
		m.Nak()
		n.stop(fmt.Errorf("cluster: node pool: %w", err))
	default:
		m.Ack()
	}
}

var (
	errCallerGone = errors.New("cluster: caller gone")
	errReply      = errors.New("cluster: no answer to the results") // after retries
)

// reply sends one result message and waits until the client has it; a
// client that is gone (no responders) or cancelled ends the chunk.
func (n *node) reply(ctx context.Context, client, subj string, msg []byte) error {
	for try := 0; ; try++ {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := n.nc.RequestWithContext(rctx, subj, msg)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return errCallerGone
		case errors.Is(err, nats.ErrNoResponders) && !n.clientAlive(client):
			return errCallerGone
		case try >= 30:
			return fmt.Errorf("%w: %s: %w", errReply, subj, err)
		}
		time.Sleep(50 * time.Millisecond) // a server failing over
	}
}

// parseSubject checks <ns>.task.<client>.<slot>.
func (n *node) parseSubject(subj string) (client string, slot int, ok bool) {
	rest, ok := strings.CutPrefix(subj, n.n.ns+".task.")
	if !ok {
		return "", 0, false
	}
	client, slotText, ok := strings.Cut(rest, ".")
	if !ok || !nameOK(client) {
		return "", 0, false
	}
	slot, err := strconv.Atoi(slotText)
	if err != nil || slot < 0 || slot > 1<<16 {
		return "", 0, false
	}
	return client, slot, true
}

// clientAlive asks the client's liveness subject, trusting an answer for
// aliveFor: no responders means it is gone (its connection closed or the
// process died); a timeout is taken as alive (a slow network).
func (n *node) clientAlive(client string) bool {
	n.mu.Lock()
	e, ok := n.alive[client]
	n.mu.Unlock()
	if ok && (!e.alive || time.Since(e.at) < aliveFor) {
		return e.alive
	}
	_, err := n.nc.Request(n.n.alive(client), nil, time.Second)
	alive := !errors.Is(err, nats.ErrNoResponders)
	n.mu.Lock()
	if len(n.alive) >= maxRemembered {
		clear(n.alive)
	}
	n.alive[client] = aliveEntry{alive: alive, at: time.Now()}
	n.mu.Unlock()
	return alive
}

// onCancel takes <ns>.cancel.<client> with a job: a running part of it
// stops, a later one is terminated unrun.
func (n *node) onCancel(m *nats.Msg) {
	client := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	if len(m.Data) != 8 || !nameOK(client) {
		return
	}
	key := jobKey{client, binary.LittleEndian.Uint64(m.Data)}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.running[key] {
		r.cancel()
	}
	if len(n.cancelled) >= maxRemembered {
		for k, at := range n.cancelled {
			if time.Since(at) > time.Minute || len(n.cancelled) >= maxRemembered {
				delete(n.cancelled, k)
			}
		}
	}
	n.cancelled[key] = time.Now()
}
