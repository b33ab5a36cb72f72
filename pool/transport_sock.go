package pool

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
)

// sockLink carries length-prefixed messages over a stream socket. It is the
// simple reference transport; the shared-memory rings are the fast one.
type sockLink struct {
	c    net.Conn
	r    *bufio.Reader
	wbuf []byte
}

func newSockLink(f *os.File) (*sockLink, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("open socket link: %w", err)
	}
	return &sockLink{c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

func openSockLink(fd int) (link, error) {
	return newSockLink(os.NewFile(uintptr(fd), "mproc-link"))
}

func (l *sockLink) send(_ context.Context, msg []byte) error {
	l.wbuf = binary.LittleEndian.AppendUint32(l.wbuf[:0], uint32(len(msg)))
	l.wbuf = append(l.wbuf, msg...)
	_, err := l.c.Write(l.wbuf)
	return err
}

// trySend always reports errWouldBlock: a stream write may wait for the
// peer, and a partial write cannot be taken back.
func (l *sockLink) trySend([]byte) error { return errWouldBlock }

func (l *sockLink) recv(_ context.Context, dst []byte) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(l.r, n[:]); err != nil {
		if err == io.EOF {
			return dst[:0], os.ErrClosed
		}
		return dst[:0], err
	}
	size := int(binary.LittleEndian.Uint32(n[:]))
	if size > maxMessage {
		return dst[:0], fmt.Errorf("pool: message of %d bytes over the %d limit", size, maxMessage)
	}
	if cap(dst) < size {
		dst = make([]byte, size)
	}
	dst = dst[:size]
	_, err := io.ReadFull(l.r, dst)
	return dst, err
}

func (l *sockLink) close() error { return l.c.Close() }

// peerGone: the kernel already reports EOF once the peer's end is closed.
func (l *sockLink) peerGone() {}

// maxMessage bounds one task or result message (a chunk of items).
const maxMessage = 256 << 20
