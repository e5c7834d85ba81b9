// Package redisstore is a store.Store that keeps sessions in Redis, standalone
// or Redis Cluster, so that several processes share them.
//
// Open connects to a server or cluster and owns the client it makes; New
// wraps a client the application already has (a rueidis.Client), so that
// the application and any number of stores share its connections, and
// leaves it open on Close.
//
// Besides store.Store the Store is a store.Locker and a store.Scanner, and
// has Touch, Exists, ExpiresIn and DeleteAll (beyond the store contract,
// for applications and tools) and Update, an atomic read-modify-write of
// one value across processes. It is no store.Purger: Redis removes expired
// keys by itself, and a set's expired members go with the set's own TTL or
// when Members lists it.
//
// # Client
//
// The store is built on github.com/redis/rueidis rather than
// github.com/redis/go-redis/v9, chosen by measurement (docs/PERFORMANCE.md):
// it pipelines concurrent commands over a few connections instead of taking
// a pooled connection per command, about twice the throughput with a
// seventh of the allocations under load, and it stops waiting as soon as a
// call's context ends, where go-redis, once a command is on the wire, heeds
// the context's deadline only with ContextTimeoutEnabled and its
// cancellation not at all. The cost is latency when little is in flight.
//
// # Keys
//
// Every Redis key the store writes starts with Options.Prefix (default
// "kvsession:"), which keeps one application's sessions apart from other
// data on the same server and bounds DeleteAll. Under it there are three
// keyspaces:
//
//	Prefix + "v:" + key   the value stored under key (ValueKey)
//	Prefix + "l:" + key   TryLock's lock on key, holding its token (LockKey)
//	Prefix + "s:" + set   the set named set, a sorted set (SetKey)
//
// so no key or set name a caller picks can make a value, a lock and a set
// meet. kvsession's set of a user's sessions, named by the backend's key
// prefix + "user:" + user, is at Prefix + "s:" + that; the index records
// that versions before sets kept per user are values, at Prefix + "v:" +
// that. Two stores on one server must not have one Prefix that starts the
// other's.
//
// # Expiry
//
// Entries expire through Redis's own TTLs (SET PX, PEXPIRE), with
// millisecond resolution. A TTL is rounded up to the next whole millisecond
// and starts when Redis runs the command, so an entry never expires before
// its TTL has passed since Set was called; ExpiresIn reports PTTL. Touch
// changes only the TTL: the value is neither read nor rewritten.
//
// A set (AddMember) is a sorted set whose members are scored with their
// expiry in Unix milliseconds by Redis's own clock (TIME), +inf for none,
// so that processes whose clocks differ agree. Adding is ZADD GT, which
// never lowers an expiry, in a script that also keeps the key's own TTL no
// earlier than its latest member's (none while a member never expires):
// a set whose members have all expired goes by itself. Members drops the
// expired members it skips. Each of the three is one script, one round
// trip, O(log n) in the set's size for an add or a removal.
//
// # Swap
//
// Swap is one script: GET, compare, then SET (with PX) or UNLINK. An old
// value of up to 40 bytes is sent and compared as it is; a longer one is
// not sent, but compared by SHA-1 (computed by the store, and by Redis
// with redis.sha1hex), which spares a session's save from sending the
// session twice.//
// Redis's maxmemory policy decides what happens when memory runs out. With
// an evicting policy Redis may drop sessions, and locks, before they expire;
// noeviction makes writes fail instead.
//
// # Locks
//
// TryLock is SET NX PX with a random 128-bit token as the value; Unlock
// deletes the lock in a script only if it still holds the caller's token, so
// a holder whose lease ran out cannot release its successor's lock. The lock
// lives on one Redis node: if that node fails over to a replica that had
// not yet received it, the lock is lost, as with any lock kept in one Redis.
// DeleteAll leaves locks alone; they go when their leases end.
//
// A TryLock or Unlock that gets no answer (CallTimeout, its context, a
// broken connection) may have taken effect, or may yet: a stalled Redis
// runs the SET NX waiting in its socket when it resumes, after its caller
// was told the call failed and dropped the token. The store keeps such
// tokens and releases their locks itself, with Unlock's script, as soon as
// Redis answers again, from one goroutine that runs only while some are
// queued (at most 10,000, each for at most two minutes or its lease, if
// longer). Sessions locked during a stall are therefore free again within
// about a second of Redis coming back, not a whole lease later. An Unlock
// called with a context that has already ended is queued the same way, so
// that a request whose client went away still frees its session.
//
// # Update
//
// Update reads a key with GET, computes the new value, and writes it with a
// script that first checks the key still holds what was read, retrying with
// a short random pause when it does not (up to 100 times, then
// ErrConflict). No connection is reserved for it and no WATCH is needed, so
// it works unchanged on a cluster.
//
// # Cluster
//
// Every command the store sends touches one key (the scripts too), so any
// key may live in any hash slot and nothing needs hash tags. A Prefix with
// a hash tag ("{sessions}:") would put every key in one slot, hence on one
// master. DeleteAll walks the keyspace with SCAN on every master in turn,
// and deletes what it finds with UNLINK, one key per command on a cluster
// since a batch may span slots; Scan walks the value keyspace the same
// way, and fetches values with one GET per key, pipelined, where a
// standalone server takes one MGET per batch. Give Open the address of any node, and
// more in Options.Addrs so that it starts while one of them is down: the
// client discovers the rest and follows the cluster when slots move.
//
// # Contexts and timeouts
//
// Every call checks its context before sending anything, and stops waiting
// when the context ends, returning an error that errors.Is the context's
// error. A call whose context allows more than Options.CallTimeout (two
// seconds by default) runs under that timeout instead: without it a call
// whose context never ends would wait for as long as Redis does not
// answer, while the client retries reads and reconnects. A stalled or
// unreachable Redis thus fails every call within CallTimeout, with an
// error that errors.Is context.DeadlineExceeded and names CallTimeout. A
// negative CallTimeout turns this off. A command already sent is not withdrawn: Redis may still carry out
// a Set whose call returned context.Canceled. Open's client sends every
// command through its pipeline (rueidis's AlwaysPipelining), so a call that
// gives up leaves its connection open and its late reply is discarded. With
// a client given to New without that option, a lone command with a deadline
// is run synchronously, and when the deadline passes the client closes the
// connection and reconnects on the next call.
//
// The client opens its connections lazily, and opening one does not heed a
// bare cancellation: a call that has to open or reopen a connection (the
// first calls of a new client, or the first after a connection broke) waits
// for the handshake up to its deadline (CallTimeout's, unless its context's
// comes first; Options.DialTimeout with CallTimeout off and no deadline),
// and, against a server that accepted the connection but does not answer,
// up to a second more while the client tears it down. Calls on connections
// already open, which is every call of a client in use, end at the
// deadline: a redis-server stopped for 15 seconds failed each call after
// two seconds.
//
// # Appender
//
// The store does not implement store.Appender. rueidis reads each reply
// into a string of its own, which Get hands to the caller without copying;
// copying it into a caller's buffer would add work, not save an
// allocation. (rueidis can stream a reply into a writer, but only over a
// dedicated connection, which measured slower.)
//
// # Traits
//
// The store reports no store.Traits. Its entries live in a server other
// processes share, so it is not InProcess; and a command the client has
// queued may still hold its key after a call gave up on its context, so it
// does not report BorrowsKeys.
//
// # Errors
//
// A missing key is store.ErrNotFound. Other errors from Redis or the
// network are wrapped with the command that failed ("redis store: GET:
// ..."), and never include the key, which for sessions is a secret.
package redisstore
