package kvsession

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Stress: sessions of alice keep changing ids (RenewID, with a value
// change), being re-read with ExtendOnAccess, while DestroyUserSessions
// runs. No login happens: after it returns and the requests in flight
// finish, no session of alice may be alive.
func TestStressLogoutEverywhereVsRenewID(t *testing.T) {
	eachEnd(t, Config{ExtendOnAccess: true, MaxAge: time.Hour, LockLease: 20 * time.Millisecond, LockWait: time.Second}, func(t *testing.T, b *ServerBackend) {
		ctx := context.Background()
		const sessions = 8
		var mu sync.Mutex
		var seen []string
		ids := make([]string, sessions)
		for i := range ids {
			ids[i] = login(t, b, "alice")
			seen = append(seen, ids[i])
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		for i := range ids {
			for w := 0; w < 2; w++ {
				wg.Go(func() {
					id := ids[i]
					for k := 0; !stop.Load(); k++ {
						s := b.LoadFromRequest(ctx, []byte("session="+id))
						s.Len()
						switch (k + w) % 3 {
						case 0:
							s.RenewID()
							s.SetInt64("n", int64(k))
						case 1:
							s.SetInt64("m", int64(k))
						case 2:
						}
						out := &sink{}
						err := b.StoreInResponse(s, out)
						b.Release(s)
						if err != nil {
							continue // ErrConflict under the lock: allowed
						}
						if line, ok := out.cookies["session"]; ok {
							v := out.cookieValue(t, "session")
							if len(v) > 10 {
								id = v
								mu.Lock()
								seen = append(seen, v)
								mu.Unlock()
							}
							_ = line
						}
					}
				})
			}
		}
		time.Sleep(30 * time.Millisecond)
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		n, err := b.DestroyUserSessions(dctx, "alice")
		cancel()
		t.Logf("DestroyUserSessions = %d, %v after %v", n, err, time.Since(start))
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		stop.Store(true)
		wg.Wait()
		if list, err := b.UserSessions(ctx, "alice"); err != nil || len(list) != 0 {
			t.Errorf("after log out everywhere: %d sessions of alice listed (%v)", len(list), err)
		}
		mu.Lock()
		defer mu.Unlock()
		live := 0
		for _, id := range seen {
			user := ""
			request(t, b, id, func(s *Session) { user = s.User() })
			if user == "alice" {
				live++
			}
		}
		if live != 0 {
			t.Errorf("%d of %d ids seen are alive after log out everywhere", live, len(seen))
		}
	})
}
