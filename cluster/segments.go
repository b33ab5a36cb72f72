package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mproc/mproc/internal/fdpass"
	"github.com/mproc/mproc/shm"
)

// Shared inputs. A task argument that holds an shm.Array names its segment
// by id; a node's worker resolves the id by asking the node (its parent),
// whose shm.Lookup asks fdpass.Fetch, which a node sets to fetchSegment:
// the node takes the segment from the namespace's object store, asking the
// clients whose chunks it runs to put it there first if it is not there
// yet. The object is the whole memfd, header included, so the node's copy
// has the caller's id and passes shm's header checks; the object store
// checks its SHA-256 digest as it is read. The node keeps the copy, frozen,
// until the caller closes its array: the client notices (shm.Lookup fails),
// deletes the object and tells the nodes to drop theirs. Only frozen
// segments travel: a writable one could not stay the same on two machines.

// maxSegment bounds the object a node will download and map.
const maxSegment = 1 << 36

func segName(id uint64) string { return strconv.FormatUint(id, 16) }

func (n names) bucket() string              { return n.ns + "_segments" }
func (n names) segRequest(cl string) string { return n.ns + ".seg." + cl }
func (n names) release() string             { return n.ns + ".release" }

// segments is a client's side: what it uploaded, and the watcher that
// notices closed arrays.
type segments struct {
	cl   *client
	obj  jetstream.ObjectStore
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	puts map[uint64]*upload
}

type upload struct {
	done chan struct{}
	err  error
}

func (cl *client) openSegments(ctx context.Context) error {
	obj, err := cl.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      cl.n.bucket(),
		Description: "mproc shared inputs of namespace " + cl.n.ns,
		Storage:     cl.storage(),
		Replicas:    cl.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("cluster: object store %s: %w", cl.n.bucket(), err)
	}
	s := &segments{cl: cl, obj: obj, stop: make(chan struct{}), done: make(chan struct{}), puts: make(map[uint64]*upload)}
	sub, err := cl.nc.Subscribe(cl.n.segRequest(cl.id), s.onRequest)
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	cl.subs = append(cl.subs, sub)
	cl.segs = s
	go s.watch()
	return nil
}

// onRequest uploads the segment a node asks for (once per id) and answers
// with an empty message, or an error text.
func (s *segments) onRequest(m *nats.Msg) {
	if len(m.Data) != 8 {
		return
	}
	id := binary.LittleEndian.Uint64(m.Data)
	go func() {
		if err := s.put(id); err != nil {
			m.Respond([]byte(err.Error()))
			return
		}
		m.Respond(nil)
	}()
}

func (s *segments) put(id uint64) error {
	s.mu.Lock()
	u, ok := s.puts[id]
	if !ok {
		u = &upload{done: make(chan struct{})}
		s.puts[id] = u
	}
	s.mu.Unlock()
	if ok {
		<-u.done
		return u.err
	}
	defer close(u.done)
	seg, err := shm.Lookup(id)
	if err != nil {
		u.err = err
	} else if !seg.Frozen() {
		u.err = fmt.Errorf("cluster: segment %#x is not frozen: nodes on other machines get a read-only copy; Freeze it before passing it to a remote call", id)
	} else if f := seg.File(); f == nil {
		u.err = fmt.Errorf("cluster: segment %#x was closed", id)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// The whole file: the header gives the node's copy the same id.
		r := io.NewSectionReader(f, 0, int64(shm.HeaderSize+seg.Len()))
		_, u.err = s.obj.Put(ctx, jetstream.ObjectMeta{Name: segName(id)}, r)
	}
	if u.err != nil {
		s.mu.Lock()
		delete(s.puts, id) // let a later request try again
		s.mu.Unlock()
	}
	return u.err
}

// watch deletes the objects of arrays the caller closed, and tells the
// nodes to drop their copies.
func (s *segments) watch() {
	defer close(s.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.sweep(false)
		case <-s.stop:
			s.sweep(true)
			return
		}
	}
}

func (s *segments) sweep(all bool) {
	s.mu.Lock()
	var gone []uint64
	for id, u := range s.puts {
		select {
		case <-u.done:
		default:
			continue // being uploaded
		}
		if _, err := shm.Lookup(id); all || err != nil {
			gone = append(gone, id)
			delete(s.puts, id)
		}
	}
	s.mu.Unlock()
	for _, id := range gone {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.obj.Delete(ctx, segName(id))
		cancel()
		s.cl.nc.Publish(s.cl.n.release(), binary.LittleEndian.AppendUint64(nil, id))
	}
}

func (s *segments) close() {
	close(s.stop)
	<-s.done
}

// nodeSegments is a node's side.
type nodeSegments struct {
	n   *node
	obj jetstream.ObjectStore

	mu   sync.Mutex
	have map[uint64]bool // ids fetched into this process
}

// current is the serving node's side; hookFetch makes this process's
// shm.Lookup ask it for unknown segments. It is process-wide: one node per
// process at a time.
var (
	current  atomic.Pointer[nodeSegments]
	hookOnce sync.Once
	hooked   bool
)

// hookFetch sets fdpass.Fetch, once, before the node's local pool starts
// any worker that could read it. It reports false if something else
// resolves segments in this process (a node inside a pool worker).
func hookFetch() bool {
	hookOnce.Do(func() {
		if fdpass.Fetch == nil {
			fdpass.Fetch, hooked = fetchCurrent, true
		}
	})
	return hooked
}

func fetchCurrent(id uint64) (*os.File, error) {
	ns := current.Load()
	if ns == nil {
		return nil, fmt.Errorf("cluster: segment %#x: the node is not connected to its object store", id)
	}
	return ns.fetch(id)
}

// openNodeSegments makes this node's shm.Lookup fetch unknown segments
// from the object store.
func (n *node) openNodeSegments(ctx context.Context, js jetstream.JetStream) error {
	ns := &nodeSegments{n: n, have: make(map[uint64]bool)}
	for {
		obj, err := js.ObjectStore(ctx, n.n.bucket())
		if err == nil {
			ns.obj = obj
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !current.CompareAndSwap(nil, ns) {
		return errors.New("cluster: another node in this process resolves segments already")
	}
	n.unhook = func() { current.CompareAndSwap(ns, nil) }
	sub, err := n.nc.Subscribe(n.n.release(), ns.onRelease)
	if err != nil {
		n.unhook()
		return fmt.Errorf("cluster: node subscribe: %w", err)
	}
	n.subs = append(n.subs, sub)
	return nil
}

// fetch returns a sealed memfd holding segment id, from the object store.
// A copy whose digest does not match (a read cut short by a server's
// fail-over, say) is read again, a few times.
func (s *nodeSegments) fetch(id uint64) (*os.File, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for try, wait := 1, 100*time.Millisecond; ; try, wait = try+1, 2*wait {
		f, err := s.fetchOnce(ctx, id)
		if err == nil || try == fetchTries || !errors.Is(err, jetstream.ErrDigestMismatch) {
			return f, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: segment %#x: %w (after %v)", id, ctx.Err(), err)
		}
	}
}

// fetchTries bounds the reads of one segment that fail their digest.
const fetchTries = 4

func (s *nodeSegments) fetchOnce(ctx context.Context, id uint64) (*os.File, error) {
	res, err := s.obj.Get(ctx, segName(id))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		if err = s.ask(ctx, id); err == nil {
			res, err = s.obj.Get(ctx, segName(id))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: segment %#x: %w", id, err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return nil, fmt.Errorf("cluster: segment %#x: %w", id, err)
	}
	if info.Size < shm.HeaderSize || info.Size > maxSegment {
		return nil, fmt.Errorf("cluster: segment %#x: object of %d bytes", id, info.Size)
	}
	f, err := sealedCopy("mproc-remote", res, int64(info.Size))
	if err != nil {
		return nil, fmt.Errorf("cluster: segment %#x: %w", id, err)
	}
	s.mu.Lock()
	s.have[id] = true
	s.mu.Unlock()
	return f, nil
}

// ask the clients whose chunks run here to upload segment id.
func (s *nodeSegments) ask(ctx context.Context, id uint64) error {
	s.n.mu.Lock()
	clients := make(map[string]bool)
	for k := range s.n.running {
		clients[k.client] = true
	}
	s.n.mu.Unlock()
	var errs []error
	for c := range clients {
		m, err := s.n.nc.RequestWithContext(ctx, s.n.n.segRequest(c), binary.LittleEndian.AppendUint64(nil, id))
		switch {
		case err != nil:
			errs = append(errs, err)
		case len(m.Data) == 0:
			return nil
		default:
			errs = append(errs, errors.New(string(m.Data[:min(len(m.Data), 1024)])))
		}
	}
	if len(errs) == 0 {
		return errors.New("no caller running here holds it")
	}
	return errors.Join(errs...)
}

// onRelease drops this node's copy of a segment its caller closed.
func (s *nodeSegments) onRelease(m *nats.Msg) {
	if len(m.Data) != 8 {
		return
	}
	id := binary.LittleEndian.Uint64(m.Data)
	s.mu.Lock()
	had := s.have[id]
	delete(s.have, id)
	s.mu.Unlock()
	if !had {
		return
	}
	if seg, err := shm.Lookup(id); err == nil {
		seg.Close()
	}
}
