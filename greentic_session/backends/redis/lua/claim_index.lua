-- A cluster claim's first step, on one shard of the deadline index: the members due now (at most
-- ARGV[1]), each rescored to the end of a lease of ARGV[2] ms so no other claim meets them
-- meanwhile. The store then claims each at its record (claim_record.lua); a member whose second
-- step never ran comes due again when that lease ends.
-- KEYS[1] an index shard
-- Returns the members, or -3 when the shard key holds another type.
local now = due_now()
local members, wrong = W.read_typed('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0,
                                    tonumber(ARGV[1]))
if wrong then return -3 end
local ends = now + tonumber(ARGV[2])
for _, member in ipairs(members) do redis.call('ZADD', KEYS[1], ends, member) end
return members
