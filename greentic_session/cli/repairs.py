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

# KEYS[1] a string key, KEYS[2..] keys deleted with it (a blob's meta); ARGV[1] the value seen.
DELETE_IF_VALUE = """
if redis.call('TYPE', KEYS[1]).ok == 'string' and redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', unpack(KEYS))
end
return 0
"""

# KEYS[1] a pointer, wait scope or meta key, KEYS[2] the blob it names; ARGV[1] the value seen.
DELETE_ORPHAN = """
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('TYPE', KEYS[1]).ok == 'string'
   and redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] a wait set, KEYS[2] the blob its member names; ARGV[1] the member.
REMOVE_ORPHAN_MEMBER = """
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('TYPE', KEYS[1]).ok == 'set' then
  return redis.call('SREM', KEYS[1], ARGV[1])
end
return 0
"""

# KEYS[1] any key; ARGV[1] the Redis type seen.
DELETE_IF_TYPE = """
if redis.call('TYPE', KEYS[1]).ok == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# import: one call per batch, its steps packed into three arguments (redis-py spends far more
# packing a million small arguments than Redis spends running the batch). ARGV[1] holds one op
# letter per step, ARGV[2] the byte lengths of the fields, comma-separated, ARGV[3] the fields
# back to back, three per step: key, value, PTTL ('' = none). Like the store's scripts, it names
# keys at run time (Redis Cluster is not supported).
# ops: S = SET (replacing any value and expiry), D = DEL, A = SADD then PEXPIRE or PERSIST.
# Returns the step numbers that failed (a wait set key holding another type).
IMPORT = """
local ops, data = ARGV[1], ARGV[3]
local fields, pos = {}, 1
for length in string.gmatch(ARGV[2], '%d+') do
  local n = tonumber(length)
  fields[#fields + 1] = string.sub(data, pos, pos + n - 1)
  pos = pos + n
end
local failed = {}
for i = 1, #ops do
  local op = string.sub(ops, i, i)
  local key, value, pttl = fields[3 * i - 2], fields[3 * i - 1], fields[3 * i]
  local reply
  if op == 'S' then
    if pttl == '' then reply = redis.pcall('SET', key, value)
    else reply = redis.pcall('SET', key, value, 'PX', pttl) end
  elseif op == 'D' then
    reply = redis.pcall('DEL', key)
  else
    reply = redis.pcall('SADD', key, value)
    if not (type(reply) == 'table' and reply.err) then
      if pttl == '' then reply = redis.pcall('PERSIST', key)
      else reply = redis.pcall('PEXPIRE', key, pttl) end
    end
  end
  if type(reply) == 'table' and reply.err then failed[#failed + 1] = i end
end
return failed
"""
