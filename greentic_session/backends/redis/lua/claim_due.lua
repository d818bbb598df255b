-- claim_due_waits on a single node, in one step: the index members due now, in order, each
-- judged against its record and wait (due_record.lua) until ARGV[1] are live; the live ones are
-- leased (record and index member rescored to the lease's end), dead ones pruned with their
-- member, and members met early (leased, or due later) rescored to when they are due. Every read
-- comes first.
-- KEYS[1] the deadline index
-- ARGV[1] limit; ARGV[2] lease ms; ARGV[3] the lease ids' prefix (a fresh token: the n-th wait
-- claimed gets '{prefix}.{n}'); ARGV[4] deadline record prefix; ARGV[5] blob key prefix;
-- ARGV[6] scope pointer prefix
-- Returns the claimed waits, each {session key, blob, scope JSON, due ms, attempt, lease id,
-- user} (and for a sealed blob {env, tenant_id, team} for the claimer to judge it: due_record.lua),
-- or -3 when the index key holds another type.
local now = due_now()
local limit = tonumber(ARGV[1])
-- Dead or early members met on the way do not count against the limit: further pages are read
-- until `limit` waits are claimed, up to this many members examined per call.
local budget = 2 * limit + 100
local members, plans, claiming = {}, {}, 0
while claiming < limit and #members < budget do
  local want = math.min(limit - claiming, budget - #members)
  local page, wrong = W.read_typed('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', #members,
                                   want)
  if wrong then return -3 end
  for _, member in ipairs(page) do
    local plan = due_judge(member, ARGV[4], ARGV[5], ARGV[6], now)
    members[#members + 1], plans[#plans + 1] = member, plan
    if plan.verdict == 'deliver' then claiming = claiming + 1 end
  end
  if #page < want then break end
end

local ends = now + tonumber(ARGV[2])
local claimed = {}
for i, plan in ipairs(plans) do
  if plan.verdict == 'deliver' then
    local lease = ARGV[3] .. '.' .. #claimed
    redis.call('HSET', plan.record, 'attempt', plan.attempt, 'lease', lease, 'until', ends)
    redis.call('ZADD', KEYS[1], ends, members[i])
    claimed[#claimed + 1] = {plan.key, plan.blob, plan.json, plan.due, plan.attempt, lease, plan.user,
                             plan.judge}
  elseif plan.verdict == 'later' then
    redis.call('ZADD', KEYS[1], plan.at, members[i])
  else
    redis.call('ZREM', KEYS[1], members[i])
    if plan.record then redis.call('DEL', plan.record) end
  end
end
return claimed
