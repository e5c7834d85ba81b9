// Package e2e holds kvsession's end-to-end tests: the library driven
// through whole servers, over loopback TCP, as clients and operators meet
// it. A test of one source file lives beside that file, in its package
// (kvfasthttp/middleware_test.go tests kvfasthttp/middleware.go); a test
// that needs a real fasthttp server, a process to kill or a Redis to stop
// lives here, filed by subject:
//
//   - hostile_test.go: hostile requests written byte by byte over TCP
//   - serverlog_test.go: requests that make fasthttp log what it read,
//     whose logs must show no session id
//   - fault_test.go: a failing, slow or hung store behind the middleware
//   - cookie_test.go: cookie sessions in many segments, and tampered ones
//   - soak_test.go: many sessions under a sustained mix of work
//   - crash_test.go: the playground killed, stopped (requests in flight
//     included) and restarted on Badger
//   - redis_test.go: playgrounds sharing a Redis, and a Redis down, stopped
//     or frozen under one
//   - playground_test.go: library guarantees checked through the playground
//   - helpers_test.go: what several of them share (what other packages'
//     tests share too is in internal/sessiontest)
//
// The tests that run the playground (crash_test.go, redis_test.go,
// playground_test.go) run on each HTTP server it serves its routes on
// (-server fasthttp, nethttp and fiber), as subtests named after the
// server; TestPlaygroundsShareRedis pairs two different servers on one
// Redis. The other tests build their own fasthttp servers with kvfasthttp,
// and run once.
//
// The package has no code of its own, only this page and its tests. Run
// them as any others:
//
//	go test -race ./e2e
//	go test -race -run '/^fiber$' ./e2e   # the playground's tests on Fiber alone (and the others)
//	KVSESSION_SOAK=60s go test -run '^TestSoak$' -v ./e2e   # the full soak (.ci/soak)
//
// Tests that run the playground (examples/playground) as a process build
// it once per test binary, with `go build` (adding -race when the tests
// run under the race detector), so the go command must be on PATH, as it
// is under go test. The playground is a module of its own
// (examples/playground/go.mod), which go finds through go.work at the
// repository's root: run these tests in workspace mode, as go does by
// default there (not with GOWORK=off). Those that signal processes
// (crash_test.go, redis_test.go, playground_test.go) build on unix only.
//
// Environment:
//
//	KVSESSION_SOAK           a duration such as 60s: TestSoak's full form,
//	                         100,000 sessions for that long per store; unset,
//	                         a short form that fits in go test ./...
//	KVSESSION_REDIS_ADDR     host:port of a Redis the tests that share one
//	                         use; unset, they start a redis-server of their
//	                         own, as the tests that stop or freeze Redis
//	                         always do
//	KVSESSION_REQUIRE_REDIS  set: fail, rather than skip, when redis-server
//	                         is not on PATH (CI sets it)
//
// -short, like -race, shrinks the short soak and the crash test.
package e2e
