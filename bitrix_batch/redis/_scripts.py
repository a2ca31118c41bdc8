"""The Lua scripts Redis runs for the shared limits, each one atomic on the server's clock.

Both read ``TIME`` inside the script, so no worker's clock matters, and both keep times as
decimal strings of seconds (six decimals): Lua numbers are doubles, and a reply's numbers
would be truncated to integers by Redis, which would break fractional rates.
"""

from __future__ import annotations

__all__ = ["RESERVE", "SYNC_HOLDS"]

#: Reserve the next slot of the leaky bucket (a GCRA over the "theoretical arrival time").
#:
#: The key holds ``tat``: the time at which the bucket would be empty. The level at time t is
#: ``(tat - t) / interval`` requests. A request of ``cost`` fits once the level plus cost is
#: at most ``capacity``, i.e. at ``tat + cost * interval - capacity * interval``; reserving it
#: moves ``tat`` on by ``cost * interval`` at once, so the next caller is told the next slot:
#: callers are served in the order their calls reach Redis, and none can starve.
#: ``full`` > 0 records a 503: the server's bucket holds at least ``full`` requests now.
#:
#: KEYS[1] the bucket; ARGV interval (s per request), capacity, cost, full.
#: Reply: seconds to wait before sending, and the level after this reservation.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local full = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
if full > 0 and tat < now + full * interval then tat = now + full * interval end
tat = tat + cost * interval
local wait = tat - capacity * interval - now
if wait < 0 then wait = 0 end
local ttl = math.ceil((tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', ttl)
return {string.format('%.6f', wait), string.format('%.6f', (tat - now) / interval)}
"""

#: Merge this worker's operating-time holds into the shared ones, and return them all.
#:
#: The key is a hash: method -> server time its hold ends. A hold is only ever extended,
#: as in `OperatingBudget`; ended holds are dropped; the key expires with its last hold.
#:
#: KEYS[1] the hash; ARGV pairs of method and seconds from now.
#: Reply: pairs of method and seconds left, for every hold in force.
SYNC_HOLDS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #ARGV, 2 do
  local ends = now + tonumber(ARGV[i + 1])
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') or 0
  if ends > old then
    redis.call('HSET', KEYS[1], ARGV[i], string.format('%.6f', ends))
  end
end
local out = {}
local last = now
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ends = tonumber(all[i + 1]) or 0
  if ends <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
    out[#out + 1] = string.format('%.6f', ends - now)
    if ends > last then last = ends end
  end
end
if #out > 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil((last - now) * 1000) + 1000)
end
return out
"""
