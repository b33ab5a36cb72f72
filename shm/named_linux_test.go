package shm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// within runs f in a goroutine and returns its error, failing the test if
// it does not return within d: a call that blocks forever fails the test
// instead of hanging it.
func within(tb testing.TB, d time.Duration, f func() error) error {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		tb.Fatalf("still blocked after %v", d)
		return nil
	}
}

// TestNamedRefusesForeignFiles puts at a segment's name what CreateNamed
// would never make (a FIFO, a symlink, a file with a wider mode or another
// owner): CreateNamed and OpenNamed must return an error promptly, and leave
// the file where it is.
func TestNamedRefusesForeignFiles(t *testing.T) {
	stale := make([]byte, HeaderSize+64) // big enough to look reclaimable
	tests := []struct {
		name    string
		plant   func(t *testing.T, path string)
		wantErr error // of OpenNamed
	}{
		{"FIFO", func(t *testing.T, path string) {
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrBadMagic},
		{"symlink to a segment file", func(t *testing.T, path string) {
			target := mustCreateNamed(t)
			if err := os.Symlink(shmDir+"/"+namePrefix+"-"+target, path); err != nil {
				t.Fatal(err)
			}
		}, unix.ELOOP},
		{"stale file with mode 0644", func(t *testing.T, path string) {
			if err := os.WriteFile(path, stale, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
				t.Fatal(err)
			}
		}, os.ErrPermission},
		{"stale file of another user", func(t *testing.T, path string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a file away")
			}
			if err := os.WriteFile(path, stale, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, os.ErrPermission},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("foreign-%x", rand.Uint64())
			path := shmDir + "/" + namePrefix + "-" + name
			t.Cleanup(func() {
				// Unblock an open(2) stuck on the FIFO (if the code
				// regressed), then remove what the test planted.
				if f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0); err == nil {
					f.Close()
				}
				os.Remove(path)
			})
			tt.plant(t, path)
			err := within(t, 5*time.Second, func() error {
				s, err := CreateNamed(name, 64)
				if err == nil {
					s.Close()
				}
				return err
			})
			if !errors.Is(err, os.ErrExist) {
				t.Errorf("CreateNamed() = %v, want an error wrapping os.ErrExist", err)
			}
			err = within(t, 5*time.Second, func() error {
				s, err := OpenNamed(name)
				if err == nil {
					s.Close()
				}
				return err
			})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("OpenNamed() = %v, want an error wrapping %v", err, tt.wantErr)
			}
			if _, err := os.Lstat(path); err != nil {
				t.Errorf("Lstat after the calls = %v, want the planted file left alone", err)
			}
		})
	}
}

// TestOpenNamedRefusesWiderMode: a live segment whose file was made
// readable by others (chmod 0644) is no longer trusted by OpenNamed.
func TestOpenNamedRefusesWiderMode(t *testing.T) {
	name := mustCreateNamed(t)
	if err := os.Chmod(shmDir+"/"+namePrefix+"-"+name, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := OpenNamed(name)
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("OpenNamed(mode 0644) = %v, want an error wrapping os.ErrPermission", err)
	}
}

// mustCreateNamed creates a named segment of a random name, closed when the
// test ends, and returns the name.
func mustCreateNamed(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("test-%x", rand.Uint64())
	s, err := CreateNamed(name, 64)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return name
}
