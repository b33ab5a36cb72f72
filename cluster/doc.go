// Package cluster runs a pool's calls on worker processes spread over many
// machines, through NATS JetStream: shared memory within a machine, the
// broker between them. Only construction differs from pool.New; pool.Map,
// Apply, ApplyAsync, MapAsync, Imap and ImapUnordered take the returned
// *pool.Pool unchanged, with the same registered functions.
//
// On one machine nothing needs installing: with no URLs, Connect starts an
// embedded nats-server with JetStream (its store in a temporary directory)
// and one node process, and Close stops and removes both:
//
//	func main() {
//		pool.Init() // serves as a worker or a node when started as one
//		p, err := cluster.Connect(ctx, nil)
//		...
//		defer p.Close()
//		out, err := pool.Map(ctx, p, cube, args)
//	}
//
// Across machines, run nats-server with JetStream on a cluster of machines
// and start the program's own binary on each machine in node mode, with
// MPROC_NODE set to the servers' URLs (and MPROC_NODE_NAMESPACE,
// MPROC_NODE_CREDS, MPROC_NODE_WORKERS, MPROC_NODE_TASK_TIMEOUT,
// MPROC_NODE_CPUS as needed): pool.Init recognises it and serves until
// SIGTERM, which drains. A program can also call Serve itself, and one that
// starts nodes as its children builds them with NodeCommand, which makes
// them die with it. The client
// is Connect with Config.URLs, Options (credentials, TLS: passed to
// nats.Connect untouched) and the same Namespace.
//
// # How it works
//
// The client pool's slots (Config.Workers) are virtual workers. The pool
// core chunks calls as it does locally and hands each chunk, a task message
// in pool's wire format, to a slot's link, which publishes it to the
// namespace's work-queue stream MPROC_<ns> on subject <ns>.task.<client>.<slot>,
// cut into parts under the server's max payload. Nodes share one durable
// pull consumer ("nodes") with explicit acks and pull at most two parts per
// local worker. A node runs a part as one call of its local shared-memory
// pool (so function names and types are checked there, as locally: ErrUnknownFunc,
// ErrFuncMismatch) and sends the results to <ns>.res.<client>.<slot>.
// The client acks the part itself once it holds them: the last result
// message names the part's ack subject (the client acks only an ack
// subject of its own namespace's consumer), and any before it in a part too
// big for one message are requests the client answers, so the last one
// coming means all came. A result message lost in a fail-over leaves the
// part unacked, and JetStream delivers it again after AckWait. The link puts results back in order and hands each item to the
// pool exactly once: a part redelivered after a node died may finish twice,
// parts of a chunk may finish out of order on different nodes.
//
// JetStream owns every rule about time and retries, none is kept beside
// it: a node sends InProgress every AckWait/3 while a part runs, so a long
// part is not taken for a lost one; a part not acked within AckWait
// (its node died, hung or lost its network) is delivered again, at most
// MaxDeliver = Config.Retries+1 times; after that the server's
// MAX_DELIVERIES advisory makes the client fail its items with a
// *pool.WorkerError naming the node that last began it, and delete the
// message. A node terminates (Term) a part it must not run again: malformed,
// over its TaskTimeout (its local pool killed and replaced the worker; the
// item fails with pool.ErrTaskTimeout), cancelled, or of a caller that is
// gone.
//
// A call that is cancelled or fails fast publishes <ns>.cancel.<client>
// with the chunk's job: nodes stop it and terminate its parts as they come.
// A caller that dies cannot say so: before each part, and at each
// heartbeat, a node asks <ns>.alive.<client> (cached for a second); NATS
// answers "no responders" at once when the client's connection is gone, and
// the node drops that caller's parts.
//
// Shared inputs: an shm.Array argument names a segment that does not exist
// on another machine. A node's workers ask the node for it as they would a
// local parent; the node takes it from the namespace's object store
// (<ns>_segments, keyed by the segment id), asking the callers whose parts
// it runs to upload it there first, and keeps a sealed, read-only copy with
// the same id: the array crosses the network once per node, never once per
// task. The object store checks each object's SHA-256 digest as it is
// read, and shm checks the copy's header. When the caller closes its array
// the client deletes the object and the nodes drop their copies.
//
// Every message from the network is hostile: task and result messages are
// parsed whole under the wire format's limits (items per message, bytes
// per value, the server's max payload) before anything is allocated or
// run; advisories are decoded only under 16 KiB; subjects are checked
// token by token. A malformed part is terminated and the node keeps
// serving.
//
// # Caveats
//
// The client's Config owns the stream's and consumer's settings (AckWait,
// MaxDeliver, replicas): Connect creates or updates them, so clients of one
// namespace must agree on them. Give each program its own Namespace.
//
// Results are exactly once to the caller, but a task may run more than
// once (a node that died after running it, an ack lost in a fail-over):
// tasks should be idempotent, as with any at-least-once queue.
//
// Only frozen arrays travel (shm.Array.Freeze): a writable one could not
// stay the same on two machines; a remote call with one fails with an
// error saying so. ipc.Queue arguments cannot cross machines at all.
//
// An argument or result bigger than the server's max payload (1 MiB by
// default, less a little for headers) fails alone with pool.ErrTooLarge:
// put bulk data in a frozen shm.Array, or raise max_payload.
//
// While no server is reachable, calls wait: the connection reconnects
// forever and a task part's publish is retried for about two minutes
// (short of the stream's duplicate window, so a part is stored once),
// after which its items fail with a *pool.WorkerError. Results of parts
// already stored wait for the servers, so bound calls with a context. A
// connection closed for good (Config.Options can make reconnects give up)
// ends the virtual workers, and the pool's calls fail.
//
// pool.Pool.Stats and Layout describe the virtual slots, not the nodes'
// workers. Nodes run only on Linux, like the pool they run.
package cluster
