package cluster

import (
	"os"
	"testing"

	"github.com/mproc/mproc/internal/leakcheck"
	"github.com/mproc/mproc/pool"
)

func TestMain(m *testing.M) {
	pool.Init() // workers and nodes (this binary re-executed) never return
	if url := os.Getenv("MPROC_TEST_CALLER"); url != "" {
		os.Exit(testCaller(url))
	}
	if url := os.Getenv("MPROC_TEST_NODE_PARENT"); url != "" {
		os.Exit(testNodeParent(url))
	}
	os.Exit(leakcheck.Run(m))
}
