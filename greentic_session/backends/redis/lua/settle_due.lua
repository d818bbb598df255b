-- settle_due in the wait's slot: when ARGV[1] is the record's current lease, delete the record
-- (and, on a single node, its index member); else change nothing.
-- KEYS[1] the deadline record; KEYS[2] the deadline index (single node only: on a cluster the
-- store removes the member from its shard itself)
-- ARGV[1] the lease id (never ''); ARGV[2] the session key; ARGV[3] blob key prefix;
-- ARGV[4] scope pointer prefix
-- Returns 0 when the lease is not the current one; else {1 when the wait still stands (its scope
-- pointer names it and its blob exists), 0 when not, the index member}.
local f, wrong = W.read_typed('HMGET', KEYS[1], 'reg', 'lease', 'scope')
if wrong or not f[1] or f[2] ~= ARGV[1] then return 0 end
local key, suffix = ARGV[2], f[3]
local standing = 0
if suffix and (not CLUSTER_TAGS or string.sub(suffix, 1, 10) == string.sub(key, 1, 10))
    and get_string(ARGV[4] .. suffix) == key and redis.call('EXISTS', ARGV[3] .. key) == 1 then
  standing = 1
end
local member = f[1] .. ':' .. key
redis.call('DEL', KEYS[1])
if KEYS[2] then redis.call('ZREM', KEYS[2], member) end
return {standing, member}
