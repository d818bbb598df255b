"""The write scripts.

Compare-and-delete: each deletion is one Lua call that first checks the key is still what the
walk saw, so a repair or purge never deletes what a live writer changed meanwhile.

Copy-to-cluster: each call writes keys of one cluster slot, all declared in KEYS, and never
overwrites one (`copy.py`).
"""

from __future__ import annotations

__all__ = [
    "COPY_POINTER",
    "COPY_SESSION",
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

# copy-to-cluster, one session's keys in its slot, all or nothing. KEYS[1] the blob, then the
# session's other keys in that slot; ARGV[1] '1' for a dry run (check, write nothing); then three
# ARGV per key, from ARGV[2]: op, value, PTTL ms ('' = none). ops: B the blob (KEYS[1]) and S a
# meta, hint or wait scope key: written only if absent; P a user pointer: written if absent, left
# alone (and counted as taken) if it holds anything else; A a wait SET: the value added, the SET's
# expiry extended to cover it (never shortened). Returns {status, pointers written, pointers
# taken}: status 1 written (dry run: would be), 0 the blob is there with these very bytes (a
# previous copy: nothing to do), -1 the blob holds other data, -2 another of the session's keys
# exists (or a SET key holds another type): then nothing is written.
COPY_SESSION = """
local dry = ARGV[1] == '1'
local function field(i, n) return ARGV[1 + 3 * (i - 1) + n] end
local blob_type = redis.call('TYPE', KEYS[1]).ok
if blob_type ~= 'none' then
  if blob_type == 'string' and redis.call('GET', KEYS[1]) == field(1, 2) then return {0, 0, 0} end
  return {-1, 0, 0}
end
local written, taken, absent = 0, 0, {}
for i = 2, #KEYS do
  local op, kind = field(i, 1), redis.call('TYPE', KEYS[i]).ok
  if op == 'S' and kind ~= 'none' then return {-2, 0, 0} end
  if op == 'A' and kind ~= 'none' and kind ~= 'set' then return {-2, 0, 0} end
  if op == 'P' then
    if kind == 'none' then
      absent[i], written = true, written + 1
    elseif not (kind == 'string' and redis.call('GET', KEYS[i]) == field(i, 2)) then
      taken = taken + 1
    end
  end
end
if dry then return {1, written, taken} end
for i = 1, #KEYS do
  local op, value, pttl = field(i, 1), field(i, 2), field(i, 3)
  if op == 'A' then
    local left = redis.call('PTTL', KEYS[i])
    redis.call('SADD', KEYS[i], value)
    if pttl == '' then
      if left >= 0 then redis.call('PERSIST', KEYS[i]) end
    elseif left == -2 or (left >= 0 and left < tonumber(pttl)) then
      redis.call('PEXPIRE', KEYS[i], pttl)
    end
  elseif op ~= 'P' or absent[i] then
    if pttl == '' then redis.call('SET', KEYS[i], value)
    else redis.call('SET', KEYS[i], value, 'PX', pttl) end
  end
end
return {1, written, taken}
"""

# copy-to-cluster, a user pointer in another slot than its session (written after it). KEYS[1]
# the pointer; ARGV[1] '1' for a dry run; ARGV[2] the session key; ARGV[3] PTTL ms ('' = none).
# Returns 1 written (dry run: would be), 0 it already names the session, -1 it holds anything
# else (left alone).
COPY_POINTER = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then
  if ARGV[1] ~= '1' then
    if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
    else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
  end
  return 1
end
if kind == 'string' and redis.call('GET', KEYS[1]) == ARGV[2] then return 0 end
return -1
"""
