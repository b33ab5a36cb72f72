package kde

import (
	"fmt"
	"os"
	"testing"

	"github.com/mproc/mproc/internal/leakcheck"
	"github.com/mproc/mproc/pool"
)

func TestMain(m *testing.M) {
	pool.Init() // in a worker this serves tasks and never returns
	code := m.Run()
	if err := leakcheck.Check(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}
