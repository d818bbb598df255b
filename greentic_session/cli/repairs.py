"""The write scripts.

Compare-and-delete: each deletion is one Lua call that first checks the key is still what the
walk saw, so a repair or purge never deletes what a live writer changed meanwhile.
"""

from __future__ import annotations

__all__ = [
    "DELETE_IF_TYPE",
    "DELETE_IF_VALUE",
    "DELETE_ORPHAN",
    "IMPORT",
    "REMOVE_ORPHAN_MEMBER",
]

# Each returns 1 when it deleted, 0 when it kept a key that changed since the walk read it, and
# -1 when there was nothing left to delete (someone else did).

# KEYS[1] a string key, KEYS[2..] keys deleted with it (a blob's meta); ARGV[1] the value seen.
DELETE_IF_VALUE = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return -1 end
if kind == 'string' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', unpack(KEYS))
  return 1
end
return 0
"""

# KEYS[1] a pointer, wait scope or meta key, KEYS[2] the blob it names; ARGV[1] the value seen.
DELETE_ORPHAN = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return -1 end
if kind == 'string' and redis.call('GET', KEYS[1]) == ARGV[1]
   and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS[1] a wait set, KEYS[2] the blob its member names; ARGV[1] the member.
REMOVE_ORPHAN_MEMBER = """
if redis.call('TYPE', KEYS[1]).ok ~= 'set' or redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  return -1
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# KEYS[1] any key; ARGV[1] the Redis type seen.
DELETE_IF_TYPE = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return -1 end
if kind == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# import: one call per batch, its steps packed into four arguments (redis-py spends far more
# packing a million small arguments than Redis spends running the batch). ARGV[1] holds one op
# letter per step, ARGV[2] the byte lengths of the fields, comma-separated, ARGV[3] the fields
# back to back, three per step: key, value, PTTL ('' = none), ARGV[4] the record number of each
# step, comma-separated. Like the store's scripts, it names keys at run time (Redis Cluster is
# not supported).
# ops: S = SET (replacing any value and expiry), D = DEL, A = SADD then PEXPIRE or PERSIST.
# A record with a wait-set key that holds another type is written not at all; the script
# returns those record numbers.
IMPORT = """
local ops, data = ARGV[1], ARGV[3]
local fields, pos = {}, 1
for length in string.gmatch(ARGV[2], '%d+') do
  local n = tonumber(length)
  fields[#fields + 1] = string.sub(data, pos, pos + n - 1)
  pos = pos + n
end
local records = {}
for number in string.gmatch(ARGV[4], '%d+') do records[#records + 1] = number end
local refused, failed = {}, {}
for i = 1, #ops do
  if string.sub(ops, i, i) == 'A' then
    local kind = redis.call('TYPE', fields[3 * i - 2]).ok
    if kind ~= 'set' and kind ~= 'none' and not refused[records[i]] then
      refused[records[i]] = true
      failed[#failed + 1] = records[i]
    end
  end
end
for i = 1, #ops do
  if not refused[records[i]] then
    local op = string.sub(ops, i, i)
    local key, value, pttl = fields[3 * i - 2], fields[3 * i - 1], fields[3 * i]
    if op == 'S' then
      if pttl == '' then redis.call('SET', key, value)
      else redis.call('SET', key, value, 'PX', pttl) end
    elseif op == 'D' then
      redis.call('DEL', key)
    else
      redis.call('SADD', key, value)
      if pttl == '' then redis.call('PERSIST', key)
      else redis.call('PEXPIRE', key, pttl) end
    end
  end
end
return failed
"""
