package redisstore

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/kvsession/kvsession/store"
)

// A set is a sorted set under SetKey(set) (Prefix + "s:" + set), each
// member scored with its expiry in Unix milliseconds by Redis's clock, or
// +inf for a member that never expires. The key itself carries a TTL no
// earlier than its latest member's expiry, and none while it holds a
// member that never expires, so a set whose members have all expired goes
// on its own. The scripts read the time with TIME, so that every process
// sharing the store agrees on when a member expires whatever its own clock
// says.

// addMemberScript adds a member with ZADD GT, which adds a new member and
// only ever raises an existing one's score, then raises the key's TTL to
// the new expiry if it was earlier (or removes it for a member that never
// expires).
//
//	KEYS[1]  the set's key
//	ARGV[1]  the member
//	ARGV[2]  its TTL in milliseconds, "0" for none
var addMemberScript = rueidis.NewLuaScript(`
local pt = redis.call('PTTL', KEYS[1])
if ARGV[2] == '0' then
  redis.call('ZADD', KEYS[1], 'GT', '+inf', ARGV[1])
  if pt >= 0 then redis.call('PERSIST', KEYS[1]) end
  return 1
end
local t = redis.call('TIME')
local ttl = tonumber(ARGV[2])
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
redis.call('ZADD', KEYS[1], 'GT', string.format('%.0f', at), ARGV[1])
if pt == -2 or (pt >= 0 and pt < ttl) then
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', at))
end
return 1`)

// removeMemberScript removes a member with ZREM. A key without a TTL holds
// (or held) a member that never expires; if that was the one removed, the
// key gets the latest remaining expiry as its own, so that it does not
// outlive its members.
var removeMemberScript = rueidis.NewLuaScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('PTTL', KEYS[1]) ~= -1 then return 1 end
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if top[2] and top[2] ~= 'inf' then
  redis.call('PEXPIREAT', KEYS[1], top[2])
end
return 1`)

// membersScript drops the members whose expiry has passed and returns the
// rest. Pruning here keeps a set that is often renewed and rarely left to
// expire from growing without bound.
var membersScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now))
return redis.call('ZRANGE', KEYS[1], 0, -1)`)

// checkMember is check for a call that names a set and a member: an empty
// member is an argument error, reported before the context's.
func (s *Store) checkMember(ctx context.Context, set, member string) error {
	if member == "" && !s.closed.Load() && set != "" {
		return store.ErrEmptyKey
	}
	return s.check(ctx, set)
}

// SetKey returns the Redis key that holds the set named set.
func (s *Store) SetKey(set string) string { return s.sets + set }

// AddMember adds member to set until at least ttl from now (rounded up to
// whole milliseconds; 0 for no expiry), never shortening the expiry it
// already has, in one script: O(log n) in the set's size.
func (s *Store) AddMember(parent context.Context, set, member string, ttl time.Duration) error {
	if err := s.checkMember(parent, set, member); err != nil {
		return err
	}
	if ttl < 0 {
		return store.ErrInvalidTTL
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	ms := "0"
	if ttl > 0 {
		ms = strconv.FormatInt(millis(ttl), 10)
	}
	if err := addMemberScript.Exec(ctx, s.c, []string{s.sets + set}, []string{member, ms}).Error(); err != nil {
		return s.fail(parent, ctx, "add member script", err)
	}
	return nil
}

// RemoveMember removes member from set; a member or set that is not there
// is no error.
func (s *Store) RemoveMember(parent context.Context, set, member string) error {
	if err := s.checkMember(parent, set, member); err != nil {
		return err
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	if err := removeMemberScript.Exec(ctx, s.c, []string{s.sets + set}, []string{member}).Error(); err != nil {
		return s.fail(parent, ctx, "remove member script", err)
	}
	return nil
}

// Members returns set's members whose expiry has not passed, removing
// those whose has.
func (s *Store) Members(parent context.Context, set string) ([]string, error) {
	if err := s.check(parent, set); err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(parent)
	defer cancel()
	m, err := membersScript.Exec(ctx, s.c, []string{s.sets + set}, nil).AsStrSlice()
	if err != nil {
		return nil, s.fail(parent, ctx, "members script", err)
	}
	return m, nil
}
