-- Replace a session blob only while it exists and is still owned by the caller's scope, so an
-- update can neither resurrect a removed session nor overwrite one whose owner differs.
-- KEYS[1]  session blob key
-- ARGV[1..4] expected owner: env, tenant_id, team, user ('' means none), as fence.scope_of gives
-- ARGV[5]  the new blob
-- ARGV[6]  how many leading bytes of the new blob hold its owner fields (codec.owner_prefix_length)
-- Returns 1 when written, 0 when the session is missing, -1 when the stored blob is not
-- SessionData JSON, or {env, tenant_id, team, user} of the stored owner when it differs.
local n = tonumber(ARGV[6])
local new = ARGV[5]

-- Fast path, reading only the stored blob's head and last bytes, no JSON decode: the stored owner
-- fields are byte-identical to the new blob's and no further team/user field follows them (both
-- writers emit serde's field order). A cheap shape check keeps an obviously broken blob on the
-- slow path, which reports it.
local head = redis.call('GETRANGE', KEYS[1], 0, n + 1023)
local after = string.sub(head, n + 1, n + 5)
if head ~= '' and string.sub(head, 1, n) == string.sub(new, 1, n)
    and after ~= '"team' and after ~= '"user'
    and string.find(head, ',"cursor":{"node_pointer":"', n, true)
    and redis.call('GETRANGE', KEYS[1], -2, -1) == '"}' then
  redis.call('SET', KEYS[1], new, 'KEEPTTL')
  return 1
end

local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, data = pcall(cjson.decode, raw)
-- A blob of the wrong shape is reported, never silently replaced (get would refuse it too).
if not ok or type(data) ~= 'table' or type(data.tenant_ctx) ~= 'table'
    or type(data.flow_id) ~= 'string' or type(data.context_json) ~= 'string'
    or type(data.cursor) ~= 'table' or type(data.cursor.node_pointer) ~= 'string'
    or type(data.tenant_ctx.attempt) ~= 'number' then
  return -1
end
local owner = owner_of_ctx(data.tenant_ctx)
for i = 1, 4 do
  if owner[i] ~= ARGV[i] then return owner end
end
redis.call('SET', KEYS[1], new, 'KEEPTTL')
return 1
