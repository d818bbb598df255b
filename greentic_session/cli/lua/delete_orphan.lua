-- Compare-and-delete an orphan reference: delete it only if it still holds the value the walk
-- read and the session it names is still missing.
-- KEYS[1] a pointer, wait scope or meta key, KEYS[2] the blob it names
-- ARGV[1] the value seen
-- Returns 1 deleted, 0 kept (changed since the walk read it), -1 nothing left to delete.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return -1 end
if kind == 'string' and redis.call('GET', KEYS[1]) == ARGV[1]
   and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
