package cpus_test

import (
	"os"
	"testing"

	"github.com/mproc/mproc/internal/leakcheck"
)

// childEnv selects a child mode when this test binary is re-executed.
const childEnv = "MPROC_CPUS_TEST_CHILD"

func TestMain(m *testing.M) {
	// Child dispatch comes first, before m.Run: a child must never run the
	// test suite (it would start children of its own).
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(leakcheck.Run(m))
}
