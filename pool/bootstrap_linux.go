package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/mproc/mproc/internal/cpus"
	"github.com/mproc/mproc/internal/fdpass"
	"github.com/mproc/mproc/shm"
	"golang.org/x/sys/unix"
)

// The descriptors a worker inherits (exec.Cmd.ExtraFiles, from 3 on): its
// control socket, then, for a pool worker, its link's segment and the
// parent collector's bell (bellFD, wake_linux.go). Handing the segment over
// at exec spares the worker a fetch round trip before it is ready.
const (
	ctlFD  = 3
	linkFD = ctlFD + 1
)

// ctlConn is one end of the per-child control socket: a
// socketpair(AF_UNIX, SOCK_SEQPACKET), so every message arrives whole and
// the peer's death reads as EOF. Reads go through Go's netpoller and block
// no OS thread.
type ctlConn struct {
	c   *net.UnixConn
	wmu sync.Mutex
}

func newCtlConn(f *os.File) (*ctlConn, error) {
	c, err := net.FileConn(f) // dups f
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("control socket: got %T", c)
	}
	return &ctlConn{c: uc}, nil
}

// send writes one message, passing f's descriptor along if f != nil.
func (c *ctlConn) send(msg []byte, f *os.File) error {
	if f == nil {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		_, _, err := c.c.WriteMsgUnix(msg, nil, nil)
		return err
	}
	// Pass the descriptor inside Control, which holds a reference on it:
	// the segment's owner may Close it concurrently, and a bare f.Fd()
	// could then hand the child a closed or, worse, reused descriptor.
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		_, _, werr = c.c.WriteMsgUnix(msg, syscall.UnixRights(int(fd)), nil)
	}); err != nil {
		return err
	}
	return werr
}

// recv reads one message and the descriptor passed with it, if any.
func (c *ctlConn) recv(buf []byte) ([]byte, *os.File, error) {
	oob := make([]byte, syscall.CmsgSpace(4))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return nil, nil, os.ErrClosed // SEQPACKET: EOF
	}
	var f *os.File
	if oobn > 0 {
		cmsgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err == nil && len(cmsgs) > 0 {
			if fds, err := syscall.ParseUnixRights(&cmsgs[0]); err == nil && len(fds) > 0 {
				f = os.NewFile(uintptr(fds[0]), "mproc-segment")
				for _, fd := range fds[1:] {
					syscall.Close(fd)
				}
			}
		}
	}
	if flags&syscall.MSG_TRUNC != 0 {
		if f != nil {
			f.Close()
		}
		return nil, nil, fmt.Errorf("control message over %d bytes", len(buf))
	}
	return buf[:n], f, nil
}

func (c *ctlConn) close() error { return c.c.Close() }

func socketpair(typ int) (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	return os.NewFile(uintptr(fds[0]), "mproc-parent"), os.NewFile(uintptr(fds[1]), "mproc-child"), nil
}

// startChild starts the worker process and its watchers; spawnChild then
// waits for the handshake. l is the worker's link (nil for a Process).
func startChild(s setup, cpu int, l *shmLink) (*child, error) {
	pf, cf, err := socketpair(unix.SOCK_SEQPACKET)
	if err != nil {
		return nil, err
	}
	ctl, err := newCtlConn(pf)
	if err != nil {
		cf.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		// Never os.Args[0] or os.Executable(): the file may have been
		// replaced since; /proc/self/exe is the running image.
		Path:       "/proc/self/exe",
		Args:       childArgs(),
		Env:        append(os.Environ(), envWorker+"=1"),
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{cf},
		// The kernel kills the worker when the thread that forked it
		// dies (prctl(2) PR_SET_PDEATHSIG). StartPinned forks from a
		// thread it then returns to the runtime's pool; that thread lives
		// until some later goroutine locked to it exits still locked
		// (go.dev/issue/27505): see the Caveats in doc.go.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	if l != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, l.seg.File(), l.bell.f) // linkFD, bellFD
	}
	// From a fresh goroutine: if the caller's goroutine is locked to its
	// thread and later exits, that thread's death must not kill workers.
	errc := make(chan error, 1)
	go func() { errc <- cpus.StartPinned(cmd, cpu) }()
	err = <-errc
	cf.Close()
	if err != nil {
		if cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		ctl.close()
		return nil, fmt.Errorf("start worker: %w", err)
	}
	c := &child{
		cmd:      cmd,
		pid:      cmd.Process.Pid,
		ctl:      ctl,
		exited:   make(chan struct{}),
		ready:    make(chan error, 1),
		results:  make(chan []byte, 1),
		ctlDone:  make(chan struct{}),
		started:  time.Now(),
		releases: l,
	}
	rememberChild(c)
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	go c.serveCtl()
	if err := ctl.send(encodeSetup(s), nil); err != nil {
		c.kill()
		c.reap()
		return nil, fmt.Errorf("set up worker %d: %w", c.pid, err)
	}
	return c, nil
}

// serveCtl reads the child's control messages until EOF: the handshake,
// segment requests (answered from this process's shm registry, with the
// memfd passed by SCM_RIGHTS) and a Process's result. A child that sends
// more than one answer of a kind is broken; the extras are dropped, so
// this reader never blocks.
func (c *child) serveCtl() {
	defer close(c.ctlDone)
	buf := make([]byte, ctlMaxMessage)
	for {
		msg, f, err := c.ctl.recv(buf)
		if f != nil {
			f.Close() // children never send descriptors
		}
		if err != nil || len(msg) == 0 {
			return
		}
		var answer error
		switch msg[0] {
		case opReady:
		case opFailed:
			answer = fmt.Errorf("pool: worker %d start-up: %s", c.pid, truncateText(string(msg[1:]), maxText))
		case opFetch:
			c.serveFetch(msg[1:])
			continue
		case opResult:
			select {
			case c.results <- append([]byte(nil), msg[1:]...):
			default:
			}
			continue
		default:
			continue
		}
		select {
		case c.ready <- answer:
		default:
		}
	}
}

func (c *child) serveFetch(b []byte) {
	if len(b) != 8 {
		c.ctl.send([]byte{opFetchReply, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'b', 'a', 'd'}, nil)
		return
	}
	id := binary.LittleEndian.Uint64(b)
	reply := binary.LittleEndian.AppendUint64([]byte{opFetchReply}, id)
	seg, err := shm.Lookup(id)
	var f *os.File
	if err == nil {
		if f = seg.File(); f == nil {
			err = os.ErrClosed
		}
	}
	if err == nil {
		err = c.ctl.send(append(reply, 0), f)
	}
	if err != nil {
		// Closed while being fetched: the worker gets an error, not a hang.
		c.ctl.send(append(append(reply, 1), err.Error()...), nil)
		return
	}
	served(c, id, seg)
}

// sendRelease tells the child to drop segment id.
func (c *child) sendRelease(id uint64) error {
	return c.ctl.send(binary.LittleEndian.AppendUint64([]byte{opRelease}, id), nil)
}

// exitSignal returns the signal that killed the process, or nil.
func exitSignal(ee *exec.ExitError) os.Signal {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return nil
}

// fetchTimeout bounds a worker's wait for a segment from its parent.
const fetchTimeout = 10 * time.Second

// workerSide is the worker's end of its control socket.
type workerSide struct {
	ctl      *ctlConn
	timeout  time.Duration // bounds each fetch
	fetchMu  sync.Mutex
	replies  chan fetchReply // buffered 1; a reply nobody waits for is dropped
	tasks    chan []byte
	releases releaser
}

type fetchReply struct {
	id  uint64
	f   *os.File
	err error
}

// workerMain runs a worker and returns its exit code.
func workerMain(string) int {
	ctl, err := newCtlConn(os.NewFile(ctlFD, "mproc-ctl"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mproc worker:", err)
		return exitProtocol
	}
	buf := make([]byte, ctlMaxMessage)
	msg, _, err := ctl.recv(buf)
	if err != nil {
		return exitParentGone
	}
	s, err := decodeSetup(msg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mproc worker:", err)
		return exitProtocol
	}
	w := &workerSide{ctl: ctl, timeout: fetchTimeout, replies: make(chan fetchReply, 1), tasks: make(chan []byte, 1)}
	go w.readCtl(buf)
	fdpass.Fetch = w.fetch

	if s.process {
		if err := ctl.send([]byte{opReady}, nil); err != nil {
			return exitParentGone
		}
		task := <-w.tasks
		h, body, err := parseHeader(task)
		if err != nil || h.kind != kindTask {
			return exitProtocol
		}
		budget := -1
		w.releases.begin()
		out, _, _ := runTasks(nil, h, body, &budget, nil, nil)
		verdict, ok := processVerdict([]byte{opResult}, out)
		if err := ctl.send(verdict, nil); err != nil {
			return exitParentGone
		}
		if ok {
			return exitOK
		}
		return exitTaskFailed
	}

	inherited, err := shm.OpenFD(linkFD)
	if err != nil {
		ctl.send(append([]byte{opFailed}, err.Error()...), nil)
		return exitProtocol
	}
	l, err := openShmLink(s.transport, inherited)
	if err == nil && s.initializer != "" {
		err = runInitializer(s.initializer)
	}
	if err != nil {
		ctl.send(append([]byte{opFailed}, err.Error()...), nil)
		return exitProtocol
	}
	w.releases.posted = &l.ctl.releases
	l.notify = func() { ringFD(bellFD) }
	if err := ctl.send([]byte{opReady}, nil); err != nil {
		return exitParentGone
	}
	// A second P, idle, spares the worker the runtime's hand-off when it
	// sleeps on its task ring: sysmon retakes a P blocked in a system call
	// only when no P is idle, and then polls every 20 µs for a while,
	// preempting the task this pinned worker runs next on its one CPU.
	runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
	if err := serve(context.Background(), l, s.maxTasks, &w.releases); err != nil {
		fmt.Fprintln(os.Stderr, "mproc worker:", err)
		return exitProtocol
	}
	return exitOK
}

// readCtl is the only reader of the worker's control socket. EOF means the
// parent is gone (Pdeathsig normally got here first): exit at once rather
// than linger as an orphan.
func (w *workerSide) readCtl(buf []byte) {
	for {
		msg, f, err := w.ctl.recv(buf)
		if err != nil || len(msg) == 0 {
			os.Exit(exitParentGone)
		}
		switch {
		case msg[0] == opFetchReply && len(msg) >= 10:
			r := fetchReply{id: binary.LittleEndian.Uint64(msg[1:]), f: f}
			if msg[9] != 0 || f == nil {
				if f != nil {
					f.Close()
				}
				r = fetchReply{id: r.id, err: errors.New(string(msg[10:]))}
			}
			select {
			case w.replies <- r:
			default: // nobody is waiting for it any more
				if r.f != nil {
					r.f.Close()
				}
			}
		case msg[0] == opRelease && len(msg) == 9:
			w.releases.post(binary.LittleEndian.Uint64(msg[1:]))
		case msg[0] == opTask:
			select {
			case w.tasks <- append([]byte(nil), msg[1:]...):
			default:
			}
		default:
			if f != nil {
				f.Close()
			}
		}
	}
}

// fetch implements fdpass.Fetch: ask the parent for a segment's memfd.
func (w *workerSide) fetch(id uint64) (*os.File, error) {
	w.fetchMu.Lock()
	defer w.fetchMu.Unlock()
	req := binary.LittleEndian.AppendUint64([]byte{opFetch}, id)
	if err := w.ctl.send(req, nil); err != nil {
		return nil, err
	}
	t := time.NewTimer(w.timeout)
	defer t.Stop()
	for {
		select {
		case r := <-w.replies:
			if r.id != id { // a late answer to an earlier fetch
				if r.f != nil {
					r.f.Close()
				}
				continue
			}
			return r.f, r.err
		case <-t.C:
			return nil, fmt.Errorf("pool: the parent did not send segment %#x within %v", id, w.timeout)
		}
	}
}
