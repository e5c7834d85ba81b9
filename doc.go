// Package kvsession gives Go web services sessions: kept server-side in a
// pluggable key-value store, with only a random id in the cookie, or
// client-side, sealed with AES-256-GCM in the cookie itself.
//
// # What to import
//
//   - kvsession: Config, the two backends (New, NewCookie) and *Session,
//     which handlers use.
//   - store and one store package: store/memstore (one process, sessions
//     lost on restart), store/badgerstore (one process, on disk, the
//     embedded default), store/redisstore (several processes or machines).
//     A program links only the stores it imports. For memory alone, import
//     neither: New(cfg, nil) makes a memory store of the backend's own,
//     released by ServerBackend.Close.
//   - an HTTP adapter: kvfasthttp (fasthttp), kvhttp (net/http and the
//     routers built on it: the standard mux, chi, echo, gin) or kvfiber
//     (Fiber v3, a module of its own so that Fiber stays out of this
//     one's dependencies). No kvsession package needs an import alias.
//   - for metrics, kvprom (Prometheus, a module of its own too): it fills
//     Config.Events, hooks on what sessions and the store do, which any
//     other exporter, log or trace can use as well.
//
// # One request
//
// The adapter calls the backend's LoadFromRequest with the request's Cookie
// header (or, for a client without cookies that sends Config.IDHeader,
// LoadFromHeader with that header's value: the id then travels in that
// header both ways), runs the handler, then StoreInResponse and Release
// (kvhttp calls StoreInResponse when the handler first writes, since
// net/http sends the header then). Nothing is
// read from the store until the handler first uses the session, and
// nothing is written unless it changed it (or a lifetime rule asks for an
// extension or a rotation). A store failure goes to the adapter's error handler, never to
// a half-written response; a hostile or unknown cookie starts a fresh
// session with a new id.
//
// In the source, that request reads top to bottom: core.go (the adapter's
// side: open, release, cookies out), session.go (the handler's side),
// backend.go (load, then store in response), record.go (the stored
// record), write.go (every write of a loaded session), and store.Calls,
// the one funnel every store call goes through.
//
// # Choosing a backend and a store
//
// The server backend (New) is the default choice: the cookie is a 256-bit
// id, the data stays on the server, and logging out (Session.Destroy, or
// ServerBackend.DestroyUserSessions for every session of a user) ends the
// session for every copy of the cookie. Every end holds against requests
// already in flight: a save replaces the record only if it is still the
// one its request loaded (store.Store.Swap).
//
// The cookie backend (NewCookie) keeps nothing on the server; a logout
// there expires the cookie in one browser, and CookieBackend.RevokeUser
// (with Config.RevocationStore) refuses every copy sealed before it.
//
// The README has the full rules, the configuration table, and what each
// store guarantees under faults; docs/RELIABILITY.md lists each guarantee
// with the test that proves it.
package kvsession
