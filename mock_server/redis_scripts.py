"""The Redis store's server-side scripts: each write that must hold a bound is one atomic step.

Kept apart from the store so each script can be read whole. Keys that a
script computes (a popped task's key) share the store's prefix; the store
does not support Redis Cluster, where every key would have to be declared.
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]

# KEYS: task key, owner index, provider index, clock, tombstone key
# ARGV: record, created_at, ttl_ms, per_key_cap, max_tasks, expire_before, clock gen,
#       task id, task key prefix, expire_before for the other indexes, owner,
#       tombstone key prefix, provider index keys...
# The tombstone (the owner's name alone) outlives the task nine more keepings
# (store.TOMBSTONE_KEEPS), so an
# expired id answers as expired, not as never issued; an evicted task takes its own along.
PUT_TASK = """
local gen = redis.call('HGET', KEYS[4], 'gen') or '0'
if gen ~= ARGV[7] then return 'clock' end
local cap = tonumber(ARGV[4])
if redis.call('ZCARD', KEYS[2]) >= cap then
  -- Only a key at its cap needs its expired entries trimmed before counting.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
  while redis.call('ZCARD', KEYS[2]) >= cap do
    local oldest = redis.call('ZPOPMIN', KEYS[2])
    redis.call('DEL', ARGV[9] .. oldest[1], ARGV[12] .. oldest[1])
    redis.call('ZREM', KEYS[3], oldest[1])
  end
end
local function total()
  local sum = 0
  for i = 13, #ARGV do sum = sum + redis.call('ZCARD', ARGV[i]) end
  return sum
end
if total() >= tonumber(ARGV[5]) then
  -- Full, or holding expired entries: trim them and count again.
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[6])
  for i = 13, #ARGV do
    if ARGV[i] ~= KEYS[3] then
      redis.call('ZREMRANGEBYSCORE', ARGV[i], '-inf', '(' .. ARGV[10])
    end
  end
  if total() >= tonumber(ARGV[5]) then return 'full' end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('SET', KEYS[5], ARGV[11], 'PX', 10 * tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[8])
return 'ok'
"""

# KEYS: task key; ARGV: the record as read, the record to write
REPLACE_TASK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""

# KEYS: list, byte counter, sequence; ARGV: max bytes, entries...
JOURNAL = """
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
for i = 2, #ARGV do
  local item = redis.call('INCR', KEYS[3]) .. '|' .. ARGV[i]
  redis.call('LPUSH', KEYS[1], item)
  total = total + #item
end
local limit = tonumber(ARGV[1])
while total > limit and redis.call('LLEN', KEYS[1]) > 1 do
  total = total - #redis.call('RPOP', KEYS[1])
end
redis.call('SET', KEYS[2], total)
return total
"""

# KEYS: blob hash, expiry index (key -> expires), owner index (key -> stored at), counters,
#       sizes (key -> "size|owner")
# ARGV: key, data, meta, size, owner, now, expires, files per key, bytes per key,
#       files in all, bytes in all, blob key prefix, owner index prefix, ttl_ms
# Counters hold 'bytes' and 'files' in all and 'b:OWNER' / 'f:OWNER' per owner. Each
# blob's size and owner sit in the sizes hash, which never expires, so whoever drops a
# blob (this script, or Redis expiry followed by this script) can undo its share.
PUT_BLOB = """
local function drop(key)
  local held = redis.call('HGET', KEYS[5], key)
  redis.call('DEL', ARGV[12] .. key)
  redis.call('ZREM', KEYS[2], key)
  if not held then return end
  local bar = string.find(held, '|', 1, true)
  local size, owner = tonumber(string.sub(held, 1, bar - 1)), string.sub(held, bar + 1)
  redis.call('HDEL', KEYS[5], key)
  redis.call('ZREM', ARGV[13] .. owner, key)
  redis.call('HINCRBY', KEYS[4], 'bytes', -size)
  redis.call('HINCRBY', KEYS[4], 'files', -1)
  if redis.call('HINCRBY', KEYS[4], 'f:' .. owner, -1) <= 0 then
    redis.call('HDEL', KEYS[4], 'f:' .. owner, 'b:' .. owner)
  else
    redis.call('HINCRBY', KEYS[4], 'b:' .. owner, -size)
  end
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[6], 'LIMIT', 0, 1000)) do
  drop(key)
end
drop(ARGV[1])
local size = tonumber(ARGV[4])
local owner = ARGV[5]
while true do
  local files = tonumber(redis.call('HGET', KEYS[4], 'f:' .. owner) or '0')
  local bytes = tonumber(redis.call('HGET', KEYS[4], 'b:' .. owner) or '0')
  if files == 0 or (files < tonumber(ARGV[8]) and bytes + size <= tonumber(ARGV[9])) then break end
  drop(redis.call('ZRANGE', KEYS[3], 0, 0)[1])
end
local files = tonumber(redis.call('HGET', KEYS[4], 'files') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[4], 'bytes') or '0')
if files >= tonumber(ARGV[10]) or bytes + size > tonumber(ARGV[11]) then return 'full' end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'meta', ARGV[3], 'expires', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[14])
redis.call('HSET', KEYS[5], ARGV[1], size .. '|' .. owner)
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'bytes', size)
redis.call('HINCRBY', KEYS[4], 'files', 1)
redis.call('HINCRBY', KEYS[4], 'b:' .. owner, size)
redis.call('HINCRBY', KEYS[4], 'f:' .. owner, 1)
return 'ok'
"""

SCRIPTS = {
    "put_task": PUT_TASK,
    "replace_task": REPLACE_TASK,
    "journal": JOURNAL,
    "put_blob": PUT_BLOB,
}
