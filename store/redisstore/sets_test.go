package redisstore

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// rawScore returns member's score in the sorted set at key, and whether it
// is there.
func rawScore(t *testing.T, key, member string) (float64, bool) {
	t.Helper()
	f, err := raw.Do(t.Context(), raw.B().Zscore().Key(key).Member(member).Build()).AsFloat64()
	if rueidis.IsRedisNil(err) {
		return 0, false
	}
	if err != nil {
		t.Fatalf("ZSCORE %q %q: %v", key, member, err)
	}
	return f, true
}

// redisNowMs is the server's clock in Unix milliseconds, which the set
// scripts score members by.
func redisNowMs(t *testing.T) float64 {
	t.Helper()
	tm, err := raw.Do(t.Context(), raw.B().Time().Build()).AsIntSlice()
	if err != nil || len(tm) != 2 {
		t.Fatalf("TIME: %v %v", tm, err)
	}
	return float64(tm[0]*1000 + tm[1]/1000)
}

// TestSetLayout pins down how a set is kept: a sorted set under SetKey,
// each member scored with its expiry by Redis's clock (+inf for none), and
// the key's own TTL no earlier than its latest member's expiry, or none
// while a member never expires. This is what makes a set whose members
// have all expired go by itself.
func TestSetLayout(t *testing.T) {
	t.Parallel()
	s := openT(t)
	ctx := t.Context()
	k := s.SetKey("u")
	if k != s.Prefix()+"s:u" {
		t.Fatalf("SetKey = %q, want Prefix + \"s:u\"", k)
	}

	before := redisNowMs(t)
	if err := s.AddMember(ctx, "u", "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	after := redisNowMs(t)
	score, ok := rawScore(t, k, "a")
	if !ok || score < before+60_000 || score > after+60_000 {
		t.Fatalf("score of a 1m member = %v, %v; want between %v and %v", score, ok, before+60_000, after+60_000)
	}
	if ms := rawPTTL(t, k); ms < 59_000 || ms > 60_000 {
		t.Errorf("set key PTTL = %dms after a 1m member, want about 60000", ms)
	}

	// A shorter TTL neither lowers the member's expiry nor the key's.
	if err := s.AddMember(ctx, "u", "a", time.Second); err != nil {
		t.Fatal(err)
	}
	if got, _ := rawScore(t, k, "a"); got != score {
		t.Errorf("re-adding with a shorter TTL changed the score from %v to %v", score, got)
	}
	if ms := rawPTTL(t, k); ms < 58_000 {
		t.Errorf("re-adding with a shorter TTL cut the key's PTTL to %dms", ms)
	}
	// A short-lived member leaves the key's TTL at the longest.
	if err := s.AddMember(ctx, "u", "b", time.Second); err != nil {
		t.Fatal(err)
	}
	if ms := rawPTTL(t, k); ms < 58_000 {
		t.Errorf("adding a 1s member cut the key's PTTL to %dms", ms)
	}
	// A longer one raises it.
	if err := s.AddMember(ctx, "u", "c", time.Hour); err != nil {
		t.Fatal(err)
	}
	if ms := rawPTTL(t, k); ms < 3_590_000 {
		t.Errorf("adding a 1h member left the key's PTTL at %dms", ms)
	}

	// A member that never expires: +inf, and no TTL on the key.
	if err := s.AddMember(ctx, "u", "forever", 0); err != nil {
		t.Fatal(err)
	}
	if f, _ := rawScore(t, k, "forever"); !math.IsInf(f, 1) {
		t.Errorf("score of a member without expiry = %v, want +inf", f)
	}
	if ms := rawPTTL(t, k); ms != -1 {
		t.Errorf("set key PTTL = %d with a member that never expires, want -1", ms)
	}
	// Adding expiring members keeps it so.
	if err := s.AddMember(ctx, "u", "d", 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if ms := rawPTTL(t, k); ms != -1 {
		t.Errorf("set key PTTL = %d after adding an expiring member beside one that never expires, want -1", ms)
	}
	// Removing the only member that never expires gives the key the
	// latest remaining expiry (d's, 2h).
	if err := s.RemoveMember(ctx, "u", "forever"); err != nil {
		t.Fatal(err)
	}
	if ms := rawPTTL(t, k); ms < 7_190_000 || ms > 7_200_000 {
		t.Errorf("set key PTTL = %dms once the member without expiry is gone, want about 2h", ms)
	}

	// Sets are apart from values and from locks, and DeleteAll clears
	// them, leaving locks alone.
	if err := s.Set(ctx, "u", []byte("value"), 0); err != nil {
		t.Fatal(err)
	}
	tok, ok, err := s.TryLock(ctx, "u", time.Minute)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	if err := s.DeleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Members(ctx, "u"); err != nil || len(m) != 0 {
		t.Errorf("Members after DeleteAll = %q, %v", m, err)
	}
	if v, ok := rawGet(t, s.LockKey("u")); !ok || v != tok {
		t.Errorf("DeleteAll touched a lock: %q, %v", v, ok)
	}
}

// TestMembersPrunes checks that Members drops the members whose expiry
// has passed, so that a set renewed forever does not grow with every
// session that ever joined it.
func TestMembersPrunes(t *testing.T) {
	t.Parallel()
	s := openT(t)
	ctx := t.Context()
	if err := s.AddMember(ctx, "u", "live", time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"x", "y", "z"} {
		if err := s.AddMember(ctx, "u", m, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond) // past the three 1ms expiries
	got, err := s.Members(ctx, "u")
	if err != nil || !slices.Equal(got, []string{"live"}) {
		t.Fatalf("Members = %q, %v; want [live]", got, err)
	}
	n, err := raw.Do(ctx, raw.B().Zcard().Key(s.SetKey("u")).Build()).AsInt64()
	if err != nil || n != 1 {
		t.Errorf("ZCARD after Members = %d, %v; want 1: expired members left in the set", n, err)
	}
}
