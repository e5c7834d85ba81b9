package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/kvsession/kvsession/store"
)

// swapScript is Swap's compare-and-set, checked and applied in one script
// so that no other command runs in between.
//
//	KEYS[1]  the value's key
//	ARGV[1]  what the key must hold: "n" nothing, "v" the value ARGV[2],
//	         "h" a value whose SHA-1 is ARGV[2] (lowercase hex)
//	ARGV[2]  the value, or its SHA-1, or ""
//	ARGV[3]  "d" to delete, "0" to set without expiry, or the TTL in
//	         milliseconds
//	ARGV[4]  the new value ("" when deleting)
//
// It returns 1 when it wrote, 0 when the key held something else.
var swapScript = rueidis.NewLuaScript(`
local cur = redis.call('GET', KEYS[1])
local want = ARGV[1]
if want == 'n' then
  if cur then return 0 end
elseif not cur then
  return 0
elseif want == 'v' then
  if cur ~= ARGV[2] then return 0 end
elseif redis.sha1hex(cur) ~= ARGV[2] then
  return 0
end
local px = ARGV[3]
if px == 'd' then
  redis.call('UNLINK', KEYS[1])
elseif px == '0' then
  redis.call('SET', KEYS[1], ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[4], 'PX', px)
end
return 1`)

// swapInline is the longest old value Swap sends as it is rather than as
// its SHA-1: the 40 hex digits of a digest are no shorter, and a value
// compared byte for byte needs no hashing on either side.
const swapInline = 2 * sha1.Size

// Swap writes value under key (or deletes key, for a nil value) only if key
// still holds old, or nothing for a nil old, in one script: GET, compare,
// then SET with PX, SET, or UNLINK. An old value longer than 40 bytes is
// not sent: the script compares its SHA-1, computed here, with the SHA-1
// of what the key holds (redis.sha1hex), which keeps a session's save from
// sending the session twice. SHA-1 is not collision-resistant against an
// adversary who chooses both values; the values compared here are ones the
// application wrote, and a collision would have to be between the value a
// request loaded and a later one written by another request.
func (s *Store) Swap(parent context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if err := s.check(parent, key); err != nil {
		return false, err
	}
	if ttl < 0 {
		return false, store.ErrInvalidTTL
	}
	ctx, cancel := s.bound(parent)
	defer cancel()

	var want, cmp string
	switch {
	case old == nil:
		want = "n"
	case len(old) <= swapInline:
		want, cmp = "v", arg(ctx, old)
	default:
		sum := sha1.Sum(old)
		var h [2 * sha1.Size]byte
		hex.Encode(h[:], sum[:])
		want, cmp = "h", string(h[:])
	}
	var px, v string
	switch {
	case value == nil:
		px = "d"
	case ttl == 0:
		px, v = "0", arg(ctx, value)
	default:
		px, v = strconv.FormatInt(millis(ttl), 10), arg(ctx, value)
	}
	n, err := swapScript.Exec(ctx, s.c, []string{s.vals + key}, []string{want, cmp, px, v}).AsInt64()
	if err != nil {
		return false, s.fail(parent, ctx, "swap script", err)
	}
	return n == 1, nil
}
