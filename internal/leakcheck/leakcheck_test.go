package leakcheck

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestCheckSeesUnreapedChild(t *testing.T) {
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	old := Grace
	Grace = 10 * time.Millisecond
	defer func() { Grace = old }()
	err := Check()
	if err == nil || !strings.Contains(err.Error(), "sleep") {
		t.Fatalf("Check() = %v, want a leaked sleep child", err)
	}
}

func TestCheckSeesShmFile(t *testing.T) {
	name := "/dev/shm/" + SegmentPrefix + "-leakcheck-test"
	if err := os.WriteFile(name, nil, 0o600); err != nil {
		t.Skip("no /dev/shm:", err)
	}
	err := Check()
	os.Remove(name)
	if err == nil || !strings.Contains(err.Error(), "leakcheck-test") {
		t.Fatalf("Check() = %v, want the shm file", err)
	}
	if err := Check(); err != nil {
		t.Fatalf("Check() after cleanup = %v, want nil", err)
	}
}

func TestProcessAlive(t *testing.T) {
	if !ProcessAlive(os.Getpid()) {
		t.Fatal("ProcessAlive(self) = false")
	}
	cmd := exec.Command("true")
	cmd.Run()
	if ProcessAlive(cmd.Process.Pid) {
		t.Fatal("ProcessAlive(reaped child) = true")
	}
}
