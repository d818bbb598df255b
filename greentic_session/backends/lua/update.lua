-- Replace a session blob only while it exists and is still owned by the caller's scope, so an
-- update can neither resurrect a removed session nor overwrite one whose owner differs.
-- KEYS[1]  session blob key
-- ARGV[1..4] expected owner: env, tenant_id, team, user ('' means none), as fence.scope_of gives
-- ARGV[5]  the new blob
-- ARGV[6]  how many leading bytes of the new blob hold its owner fields (codec.owner_prefix_length)
-- Returns 1 when written, 0 when the session is missing, -1 when the stored blob is not
-- SessionData JSON, or {env, tenant_id, team, user} of the stored owner when it differs.
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end

-- Fast path, no JSON decode: the stored owner fields are byte-identical to the new blob's and no
-- further team/user field follows them (both writers emit serde's field order). A cheap shape
-- check keeps an obviously broken blob on the slow path, which reports it.
local n = tonumber(ARGV[6])
local new = ARGV[5]
local after = string.sub(raw, n + 1, n + 5)
if string.sub(raw, 1, n) == string.sub(new, 1, n) and after ~= '"team' and after ~= '"user'
    and string.find(raw, ',"cursor":{"node_pointer":"', n, true)
    and string.sub(raw, -2) == '"}' then
  redis.call('SET', KEYS[1], new, 'KEEPTTL')
  return 1
end

local ok, data = pcall(cjson.decode, raw)
-- A blob of the wrong shape is reported, never silently replaced (get would refuse it too).
if not ok or type(data) ~= 'table' or type(data.tenant_ctx) ~= 'table'
    or type(data.flow_id) ~= 'string' or type(data.context_json) ~= 'string'
    or type(data.cursor) ~= 'table' or type(data.cursor.node_pointer) ~= 'string'
    or type(data.tenant_ctx.attempt) ~= 'number' then
  return -1
end
local ctx = data.tenant_ctx
-- Mirrors fence.scope_of: the *_id field wins, else the plain one; absent is ''.
local function pick(primary, fallback)
  local v = ctx[primary]
  if type(v) ~= 'string' then v = ctx[fallback] end
  if type(v) ~= 'string' then v = '' end
  return v
end
local owner = {pick('env', 'env'), pick('tenant_id', 'tenant_id'), pick('team_id', 'team'),
               pick('user_id', 'user')}
for i = 1, 4 do
  if owner[i] ~= ARGV[i] then return owner end
end
redis.call('SET', KEYS[1], new, 'KEEPTTL')
return 1
