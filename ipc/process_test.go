//go:build linux

package ipc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

func mustQueue(tb testing.TB, cfg *QueueConfig) (*Queue[item], string) {
	tb.Helper()
	q, err := NewQueue[item](cfg)
	if err != nil {
		tb.Fatalf("NewQueue: %v", err)
	}
	tb.Cleanup(func() { q.Detach() })
	b, err := q.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return q, "MPROC_IPC_QUEUE=" + hex.EncodeToString(b)
}

// checkOrder records it and fails unless it is next[it.Producer].
func checkOrder(t *testing.T, next map[int32]int64, it item) {
	t.Helper()
	if it.Seq != next[it.Producer] {
		t.Fatalf("producer %d: got seq %d, want %d (lost, duplicated or reordered)", it.Producer, it.Seq, next[it.Producer])
	}
	next[it.Producer]++
}

// TestQueueManyProducerProcesses: N producer processes x 1 consumer; every
// message exactly once and in order per producer.
func TestQueueManyProducerProcesses(t *testing.T) {
	const producers, perProducer = 4, 50000
	q, qenv := mustQueue(t, &QueueConfig{Producers: producers, Ring: &RingConfig{Capacity: 4096}})
	var cmds []*os.Process
	for id := range producers {
		cmd := startChild(t, "queue-producer", q.seg, qenv,
			"MPROC_IPC_ID="+strconv.Itoa(id), "MPROC_IPC_N="+strconv.Itoa(perProducer))
		cmds = append(cmds, cmd.Process)
		defer waitChild(t, cmd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := make(map[int32]int64)
	for range producers * perProducer {
		it, err := q.Get(ctx)
		if err != nil {
			t.Fatalf("Get() = %v after %v", err, next)
		}
		checkOrder(t, next, it)
	}
	for id := range int32(producers) {
		if next[id] != perProducer {
			t.Errorf("producer %d delivered %d, want %d", id, next[id], perProducer)
		}
	}
	if _, err := q.TryGet(); !errors.Is(err, ErrEmpty) {
		t.Errorf("TryGet() after all = %v, want ErrEmpty", err)
	}
}

// TestQueueProducerKilled: a producer is SIGKILLed mid-stream; the other keeps
// flowing, every message the dead one committed is delivered in order, and a
// new producer reclaims its lane.
func TestQueueProducerKilled(t *testing.T) {
	const perProducer = 30000
	q, qenv := mustQueue(t, &QueueConfig{Producers: 2, Ring: &RingConfig{Capacity: 1024}})
	victim := startChild(t, "queue-producer", q.seg, qenv, "MPROC_IPC_ID=0", "MPROC_IPC_N=0")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := make(map[int32]int64)
	for next[0] < 1000 { // mid-stream: the victim is busy putting
		it, err := q.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, next, it)
	}
	survivor := startChild(t, "queue-producer", q.seg, qenv, "MPROC_IPC_ID=1", "MPROC_IPC_N="+strconv.Itoa(perProducer))
	for next[1] < 100 {
		it, err := q.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, next, it)
	}
	victim.Process.Kill()
	victim.Wait()
	// Both lanes are owned (one by a dead pid): a third producer must
	// reclaim the victim's lane, behind its committed messages.
	late := startChild(t, "queue-producer", q.seg, qenv, "MPROC_IPC_ID=2", "MPROC_IPC_N=1000")
	for next[1] < perProducer || next[2] < 1000 {
		it, err := q.Get(ctx)
		if err != nil {
			t.Fatalf("Get() = %v with %v delivered", err, next)
		}
		checkOrder(t, next, it)
	}
	waitChild(t, survivor)
	waitChild(t, late)
	if _, err := q.TryGet(); !errors.Is(err, ErrEmpty) {
		t.Errorf("TryGet() after all = %v, want ErrEmpty", err)
	}
	t.Logf("victim committed %d messages before SIGKILL, all delivered", next[0])
}

// TestQueueProducersKilledAtRandom: producers are SIGKILLed at random
// moments (mid-Put included, since they put without pause) while a steady
// producer keeps going. Every message a victim committed arrives once and in
// order, nothing half-written is ever delivered (a torn record would fail to
// decode or break the order), the steady producer never stalls, and each
// new victim reclaims a dead one's lane.
func TestQueueProducersKilledAtRandom(t *testing.T) {
	const victims, steadyN = 12, 200000
	q, qenv := mustQueue(t, &QueueConfig{Producers: 3, Ring: &RingConfig{Capacity: 1024}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := make(map[int32]int64)
	steady := startChild(t, "queue-producer", q.seg, qenv, "MPROC_IPC_ID=100", "MPROC_IPC_N="+strconv.Itoa(steadyN))
	// drain consumes until the time passes, or earlier once done reports
	// true (nil: never).
	drain := func(until time.Time, done func() bool) {
		for time.Now().Before(until) && (done == nil || !done()) {
			it, err := q.TryGet()
			if errors.Is(err, ErrEmpty) {
				time.Sleep(20 * time.Microsecond)
				continue
			}
			if err != nil {
				t.Fatalf("TryGet() = %v with %v delivered", err, next)
			}
			checkOrder(t, next, it)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for v := range int32(victims) {
		victim := startChild(t, "queue-producer", q.seg, qenv, "MPROC_IPC_ID="+strconv.Itoa(int(v)), "MPROC_IPC_N=0")
		// Let it run a random 0-8 ms, consuming meanwhile so that it is
		// putting, not blocked on a full lane, when it dies. For even victims
		// the time includes start-up, so some die before their first commit;
		// odd ones get it after their first commit, so some die mid-stream
		// however slow start-up is (a -race binary takes longer than 8 ms).
		if v%2 == 1 {
			drain(time.Now().Add(10*time.Second), func() bool { return next[v] > 0 })
			if next[v] == 0 {
				t.Fatalf("victim %d committed nothing within 10s", v)
			}
		}
		drain(time.Now().Add(time.Duration(rng.IntN(8000))*time.Microsecond), nil)
		victim.Process.Kill()
		victim.Wait()
	}
	for next[100] < steadyN {
		it, err := q.Get(ctx)
		if err != nil {
			t.Fatalf("Get() = %v with %v delivered", err, next)
		}
		checkOrder(t, next, it)
	}
	// What the last victims committed after the steady producer finished.
	for {
		it, err := q.TryGet()
		if errors.Is(err, ErrEmpty) {
			break
		}
		if err != nil {
			t.Fatalf("TryGet() = %v", err)
		}
		checkOrder(t, next, it)
	}
	waitChild(t, steady)
	killedMidStream := 0
	for v := range int32(victims) {
		if next[v] > 0 {
			killedMidStream++
		}
	}
	if killedMidStream == 0 {
		t.Fatal("no victim committed anything before its kill: the test did not exercise a death mid-stream")
	}
	t.Logf("%d of %d victims had committed messages when killed; delivered %v", killedMidStream, victims, next)
}

// TestQueueConsumerKilled: a child takes over consuming from the creator,
// takes a few items and is SIGKILLed; the producer, blocked on its full lane,
// returns ErrPeerDied soon after instead of waiting forever.
func TestQueueConsumerKilled(t *testing.T) {
	q, qenv := mustQueue(t, &QueueConfig{Producers: 1, Ring: &RingConfig{Capacity: 256}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range int64(3) {
		if err := q.Put(ctx, item{0, i}); err != nil {
			t.Fatal(err)
		}
	}
	child := startChild(t, "queue-consumer", q.seg, qenv, "MPROC_IPC_N=3")
	ring := q.st.q.rings[0]
	for ring.l.head.Load() != ring.l.tail.Load() { // the child took all three
		if ctx.Err() != nil {
			t.Fatal("the consumer child did not take its items within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if id := peerFromWord(q.st.q.l.consumer.Load()); id == nil || id.pid != child.Process.Pid {
		t.Fatalf("consumer = %+v after the child's Get, want pid %d", id, child.Process.Pid)
	}
	n := int64(3)
	for ; q.TryPut(item{0, n}) == nil; n++ {
	}
	errc := make(chan error, 1)
	go func() { errc <- q.Put(ctx, item{0, n}) }()
	time.Sleep(50 * time.Millisecond) // let it block
	child.Process.Kill()
	child.Wait()
	died := time.Now()
	err := <-errc
	if !errors.Is(err, ErrPeerDied) {
		t.Fatalf("Put() on a full lane whose consumer died = %v, want ErrPeerDied", err)
	}
	if d := time.Since(died); d > time.Second {
		t.Errorf("Put noticed the consumer's death after %v, want under 1s", d)
	}
}

// TestQueueConsumerHandOver: the creator consumes, hands consuming over to
// a child that takes a run of messages and exits, then consumes again:
// every message arrives exactly once and in order, and Len follows. The
// creator's view cached a lane tail from before the child's takes; a stale
// cache must be reloaded, not read as corruption.
func TestQueueConsumerHandOver(t *testing.T) {
	const first, more, childTakes = 5, 15, 10
	q, qenv := mustQueue(t, &QueueConfig{Producers: 2, Ring: &RingConfig{Capacity: 1024}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seq := int64(0)
	put := func(n int) {
		for range n {
			if err := q.Put(ctx, item{0, seq}); err != nil {
				t.Fatal(err)
			}
			seq++
		}
	}
	next := make(map[int32]int64)
	put(first)
	it, err := q.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, next, it)
	put(more)
	if got, want := q.Len(), first+more-1; got != want {
		t.Errorf("Len() = %d before the hand-over, want %d", got, want)
	}
	child := startChild(t, "queue-consumer", q.seg, qenv, "MPROC_IPC_N="+strconv.Itoa(childTakes), "MPROC_IPC_EXIT=1")
	waitChild(t, child)
	next[0] += childTakes // the child took the oldest ones
	if got, want := q.Len(), first+more-1-childTakes; got != want {
		t.Errorf("Len() = %d after the child's takes, want %d", got, want)
	}
	for next[0] < seq {
		it, err := q.TryGet()
		if err != nil {
			t.Fatalf("TryGet() after the hand-over = %v with %v delivered", err, next)
		}
		checkOrder(t, next, it)
	}
	if _, err := q.TryGet(); !errors.Is(err, ErrEmpty) {
		t.Errorf("TryGet() after all = %v, want ErrEmpty", err)
	}
	if n := q.Len(); n != 0 {
		t.Errorf("Len() = %d after all were taken, want 0", n)
	}
}

// TestRingProcessEcho round-trips messages of every size class through a
// child, with the two rings in one segment, then closes: the child's Get
// returns os.ErrClosed and it closes the reply ring.
func TestRingProcessEcho(t *testing.T) {
	cfg := &RingConfig{Capacity: 1 << 18, MaxMessage: 64 << 10}
	seg := mustSegment(t, 2*RingSize(cfg))
	a, b, err := twoRings(seg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	child := startChild(t, "ring-echo", seg, "MPROC_IPC_RINGSIZE="+strconv.Itoa(RingSize(cfg)))
	a.SetPeer(child.Process.Pid)
	b.SetPeer(child.Process.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var buf []byte
	for i, size := range []int{0, 1, 63, 64, 1000, 1 << 10, 4096, 64 << 10, 7, 64 << 10} {
		msg := make([]byte, size)
		for j := range msg {
			msg[j] = byte(i*31 + j)
		}
		if err := a.Put(ctx, msg); err != nil {
			t.Fatalf("Put(%d bytes) = %v", size, err)
		}
		if buf, err = b.Get(ctx, buf); err != nil || string(buf) != string(msg) {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", size, len(buf), err)
		}
	}
	a.Close()
	if _, err := b.Get(ctx, buf); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Get() after the child closed = %v, want os.ErrClosed", err)
	}
	waitChild(t, child)
}

// TestRingPeerDied: a Put blocked on a full ring returns ErrPeerDied soon
// after the consumer process exits; and Wake makes it notice at once.
func TestRingPeerDied(t *testing.T) {
	for _, wake := range []bool{false, true} {
		t.Run(fmt.Sprintf("wake=%v", wake), func(t *testing.T) {
			cfg := &RingConfig{Capacity: 256}
			seg := mustSegment(t, 2*RingSize(cfg))
			a, _, err := twoRings(seg, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for a.TryPut(make([]byte, 32)) == nil || a.TryPut(nil) == nil {
			}
			child := startChild(t, "ring-exit", seg, "MPROC_IPC_RINGSIZE="+strconv.Itoa(RingSize(cfg)))
			a.SetPeer(child.Process.Pid)
			errc := make(chan error, 1)
			go func() { errc <- a.Put(context.Background(), []byte("stuck")) }()
			waitChild(t, child)
			died := time.Now()
			if wake {
				a.Wake()
			}
			select {
			case err := <-errc:
				if !errors.Is(err, ErrPeerDied) {
					t.Errorf("Put() = %v, want ErrPeerDied", err)
				}
				limit := 300 * time.Millisecond
				if wake {
					limit = 20 * time.Millisecond
				}
				if d := time.Since(died); d > limit {
					t.Errorf("Put noticed the death after %v, want under %v", d, limit)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Put still blocked 10s after the consumer died")
			}
		})
	}
}

// TestNoLostWakeup ping-pongs between goroutines with spinning disabled, so
// every hand-off goes through the futex protocol. A lost wake-up would show
// as a hand-off taking a whole 100 ms sleep slice. Run with -race.
func TestNoLostWakeup(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	cfg := &RingConfig{Capacity: 256}
	ping, pong := mustRing(t, cfg), mustRing(t, cfg)
	ping.SetSpin(0)
	pong.SetSpin(0)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		var buf []byte
		for {
			var err error
			if buf, err = ping.Get(ctx, buf); err != nil {
				done <- pong.Close()
				return
			}
			if err := pong.Put(ctx, buf); err != nil {
				done <- err
				return
			}
		}
	}()
	// One stall of a whole slice can be a descheduled thread on a loaded
	// machine; a broken protocol loses wake-ups again and again.
	var worst time.Duration
	stalls := 0
	var buf []byte
	msg := make([]byte, 8)
	for i := range n {
		start := time.Now()
		msg[0] = byte(i)
		if err := ping.Put(ctx, msg); err != nil {
			t.Fatal(err)
		}
		var err error
		if buf, err = pong.Get(ctx, buf); err != nil || buf[0] != byte(i) {
			t.Fatalf("round %d: Get() = %v, %v", i, buf, err)
		}
		d := time.Since(start)
		worst = max(worst, d)
		if d >= 90*time.Millisecond {
			stalls++
		}
	}
	ping.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if stalls > 1 {
		t.Errorf("%d round trips took over 90 ms (slowest %v): wake-ups were lost and only the 100 ms slice recovered them", stalls, worst)
	}
	t.Logf("%d futex round trips, slowest %v", n, worst)
}

func TestSemaphoreNoLostWakeup(t *testing.T) {
	mem := alignedMem(2 * SemaphoreSize)
	s1, err := NewSemaphore(mem[:SemaphoreSize], 0)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewSemaphore(mem[SemaphoreSize:], 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 5000
	go func() {
		for range n {
			if s1.Wait(ctx) != nil {
				return
			}
			s2.Post()
		}
	}()
	var worst time.Duration
	stalls := 0
	for range n {
		start := time.Now()
		s1.Post()
		if err := s2.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		worst = max(worst, d)
		if d >= 90*time.Millisecond {
			stalls++
		}
	}
	if stalls > 1 {
		t.Errorf("%d hand-offs took over 90 ms (slowest %v): wake-ups were lost", stalls, worst)
	}
}

func TestSemaphore(t *testing.T) {
	mem := alignedMem(SemaphoreSize)
	if _, err := AttachSemaphore(mem); !errors.Is(err, ErrCorrupt) {
		t.Errorf("AttachSemaphore(zeroed) = %v, want ErrCorrupt", err)
	}
	s, err := NewSemaphore(mem, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !s.TryWait() || !s.TryWait() || s.TryWait() {
		t.Error("TryWait on a count of 2 did not succeed exactly twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait(0, 10ms) = %v, want DeadlineExceeded", err)
	}
	s.Post()
	s2, err := AttachSemaphore(mem)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Wait(context.Background()); err != nil {
		t.Errorf("Wait after Post = %v", err)
	}
}

func TestNotifier(t *testing.T) {
	n, err := NewNotifier(alignedMem(NotifierSize))
	if err != nil {
		t.Fatal(err)
	}
	key := n.Prepare()
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		time.Sleep(5 * time.Millisecond)
		n.Notify()
	}()
	if err := n.Wait(context.Background(), key); err != nil {
		t.Errorf("Wait() = %v", err)
	}
	// Wait may return as soon as seq moves, before Notify has returned; a
	// Notify still running must not count for the Prepare below.
	<-notified
	key = n.Prepare()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := n.Wait(ctx, key); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait(no notify) = %v, want DeadlineExceeded", err)
	}
	if w := n.l.ev.waiting(); w != 0 {
		t.Errorf("waiters = %d after every Wait returned, want 0", w)
	}
}
