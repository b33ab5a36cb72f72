// Package bridge lets package cluster build a pool.Pool on its own
// transport, and run task messages on a local pool, without widening pool's
// exported surface. Package pool fills in the function variables in its
// init; package cluster fills in NodeMain in its own. Nothing else may use
// it: every type here is an internal contract between those two packages.
//
// bridge imports neither: pool adapts these interfaces to its unexported
// backend, proc and link (pool/remote.go), so the two never form a cycle.
package bridge
