-- Compare-and-delete a wrong-type key: delete it only if it still has the type the walk saw.
-- KEYS[1] any key
-- ARGV[1] the Redis type seen
-- Returns 1 deleted, 0 kept (changed since the walk read it), -1 nothing left to delete.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return -1 end
if kind == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
