package kde

import (
	"os"
	"testing"

	"github.com/mproc/mproc/internal/leakcheck"
	"github.com/mproc/mproc/pool"
)

func TestMain(m *testing.M) {
	pool.Init() // in a worker this serves tasks and never returns
	os.Exit(leakcheck.Run(m))
}
