// Package leakcheck finds what a test run left behind: child processes that
// were never reaped, mproc memfd segments still open or mapped in this
// process, and /dev/shm/mproc-* files that appeared during the run.
//
// Every package whose tests start processes or create segments runs its
// tests through Run, which fails the run when Check reports anything:
//
//	func TestMain(m *testing.M) {
//		// dispatch child modes first: a child must never run the tests
//		os.Exit(leakcheck.Run(m))
//	}
//
// # Caveats
//
// The /dev/shm check compares against the directory as it was when this
// package was initialised, so a file created by another test binary running
// at the same time can be blamed on this one. Children get a grace period
// (Grace) to finish exiting before they count as leaked, because Kill and the
// reaping Wait are asynchronous.
package leakcheck
