"""The Lua scripts Redis runs for the shared limits, each one atomic on the server's clock.

All read ``TIME`` inside the script, so no worker's clock matters, and all keep times as
decimal strings of seconds (six decimals): Lua numbers are doubles, and a reply's numbers
would be truncated to integers by Redis, which would break fractional rates.
"""

from __future__ import annotations

__all__ = ["RELEASE", "RESERVE", "SYNC_HOLDS"]

# The bucket's key holds "<tat> <last>": ``tat`` is the time at which the bucket would be
# empty, ``last`` the server's time when it was written. If the server's clock has stepped
# back since (NTP, a restored VM), ``tat`` is moved back by as much, or every caller would
# wait out the step. A ``tat`` further ahead than ``most`` seconds is no queue a client can
# have made (a bad or foreign value): it is cut to ``most``, a bounded wait, not a stall.
# A value that is not a number (NaN included) counts as an empty bucket.
#
# ARGV[1] interval (s per request), ARGV[2] most (s); sets now, interval, tat.
_READ_TAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local most = tonumber(ARGV[2])
local raw = redis.call('GET', KEYS[1]) or ''
local sp = string.find(raw, ' ', 1, true)
local tat = tonumber(sp and string.sub(raw, 1, sp - 1) or raw) or 0
local last = (sp and tonumber(string.sub(raw, sp + 1))) or now
if tat ~= tat then tat = 0 end
if last == last and last > now then tat = tat - (last - now) end
if tat < now then tat = now end
if tat > now + most then tat = now + most end
"""

_WRITE_TAT = """
local ttl = math.ceil((tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f %.6f', tat, now), 'PX', ttl)
"""

#: Reserve the next slot of the leaky bucket (a GCRA over the "theoretical arrival time").
#:
#: The level at time t is ``(tat - t) / interval`` requests. A request of ``cost`` fits once
#: the level plus cost is at most ``capacity``, i.e. at ``tat + cost * interval - capacity *
#: interval``; reserving it moves ``tat`` on by ``cost * interval`` at once, so the next caller
#: is told the next slot: callers are served in the order their calls reach Redis, and none
#: can starve. ``full`` > 0 records a 503: the server's bucket holds at least ``full``
#: requests now. ``cost`` 0 only records that.
#:
#: KEYS[1] the bucket; ARGV interval, most, capacity, cost, full.
#: Reply: seconds to wait before sending, and the level after this reservation.
RESERVE = (
    _READ_TAT
    + """
local capacity = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local full = tonumber(ARGV[5])
if full > 0 and tat < now + full * interval then tat = now + full * interval end
tat = tat + cost * interval
local wait = tat - capacity * interval - now
if wait < 0 then wait = 0 end
"""
    + _WRITE_TAT
    + """
return {string.format('%.6f', wait), string.format('%.6f', (tat - now) / interval)}
"""
)

#: Give back ``cost`` slots reserved and never used (their callers were cancelled): exact, as
#: nothing was sent for them. The bucket never goes below empty; a missing key stays missing.
#:
#: KEYS[1] the bucket; ARGV interval, most, cost. Reply: the level after.
RELEASE = (
    _READ_TAT
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return '0' end
tat = tat - tonumber(ARGV[3]) * interval
if tat < now then tat = now end
"""
    + _WRITE_TAT
    + """
return string.format('%.6f', (tat - now) / interval)
"""
)

#: Merge this worker's operating-time holds into the shared ones, and return them all.
#:
#: The key is a hash: method -> server time its hold ends. A hold is only ever extended,
#: as in `OperatingBudget`, and never reaches further than ``window`` seconds from now (a
#: stored end beyond that, after a backward step of the server's clock or a bad value, is cut
#: back to it); ended holds are dropped; the key expires with its last hold.
#:
#: KEYS[1] the hash; ARGV[1] window; then pairs of method and seconds from now.
#: Reply: pairs of method and seconds left, for every hold in force.
SYNC_HOLDS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local ends = now + math.min(tonumber(ARGV[i + 1]), window)
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') or 0
  if old ~= old or old > now + window then old = 0 end
  if ends > old then
    redis.call('HSET', KEYS[1], ARGV[i], string.format('%.6f', ends))
  end
end
local out = {}
local last = now
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ends = tonumber(all[i + 1]) or 0
  if ends ~= ends then ends = 0 end
  if ends > now + window then
    ends = now + window
    redis.call('HSET', KEYS[1], all[i], string.format('%.6f', ends))
  end
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
