-- Compare-and-delete a string key (repair, purge): delete it only if it still holds the value
-- the walk read.
-- KEYS[1] a string key, KEYS[2..] keys deleted with it (a blob's meta key and wait hint)
-- ARGV[1] the value seen
-- Returns 1 deleted, 0 kept (changed since the walk read it), -1 nothing left to delete.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return -1 end
if kind == 'string' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', unpack(KEYS))
  return 1
end
return 0
