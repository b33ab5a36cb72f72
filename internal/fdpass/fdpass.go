// Package fdpass connects shm's segment registry to the process that can
// supply missing segments. Inside an mproc worker, pool sets Fetch to ask the
// parent for a segment's descriptor over the worker's control socket
// (SCM_RIGHTS); in any other process Fetch stays nil and an unknown segment is
// an error.
package fdpass

import "os"

// Fetch returns the memfd of the segment with the given id, or an error that
// says why it cannot. Set once, before any task runs; read-only afterwards.
var Fetch func(id uint64) (*os.File, error)

// Closed, if set, is called by shm after a segment created in this process
// is closed. Set once, at package initialisation.
var Closed func(id uint64)

// Release drops a segment that Lookup fetched. Set by shm.
var Release func(id uint64) error
