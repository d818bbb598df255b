-- A cluster claim's second step, in the wait's slot: judge one index member against its record
-- and wait (due_record.lua) by this node's clock and, when live, lease it.
-- KEYS[1] the deadline record (it routes the call; due_judge rebuilds the same name)
-- ARGV[1] the index member; ARGV[2] lease ms; ARGV[3] the lease id; ARGV[4] deadline record
-- prefix; ARGV[5] blob key prefix; ARGV[6] scope pointer prefix
-- Returns {session key, blob, scope JSON, due ms, attempt, lease id, user[, judge]} when claimed
-- (judge: due_record.lua); the time
-- (ms) to score the member at when it is leased or not yet due here; 0 when the member is stale
-- (a dead record went with it).
local now = due_now()
local plan = due_judge(ARGV[1], ARGV[4], ARGV[5], ARGV[6], now)
if plan.verdict == 'deliver' then
  local ends = now + tonumber(ARGV[2])
  redis.call('HSET', plan.record, 'attempt', plan.attempt, 'lease', ARGV[3], 'until', ends)
  return {plan.key, plan.blob, plan.json, plan.due, plan.attempt, ARGV[3], plan.user, plan.judge}
end
if plan.verdict == 'later' then return plan.at end
if plan.record then redis.call('DEL', plan.record) end
return 0
