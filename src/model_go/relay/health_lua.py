"""The Lua scripts of the channel health replicas share (relay/redis_health.py): each changes one
circuit's record atomically, on Redis's clock (`TIME`), and publishes the record it leaves.

A circuit's record is a hash: f failures in a row while closed, u open until (Redis time; 0 while
closed), t trips, l last trip, k cause (rate | down), p probe owner, q probe claimed until, m how long
the record outlives its cooldown (the trip memory), v version.
"""

# A circuit's record, as every script returns it and publishes it:
# [member, state, open seconds left, trips, cause, failures, probe owner, probe seconds left, version]
# The version is a counter shared by all circuits, so a replica applies a record only if it is no
# older than the last one it applied for that circuit (replies and pub/sub travel apart).
PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function num(h, field)
  return tonumber(redis.call('HGET', h, field) or 0) or 0
end
local function record(h, member, seq)
  if redis.call('EXISTS', h) == 0 then
    return {member, 'closed', '0', '0', '', '0', '', '0', tostring(redis.call('GET', seq) or 0)}
  end
  local u, q, p = num(h, 'u'), num(h, 'q'), redis.call('HGET', h, 'p') or ''
  local left = 0
  if p ~= '' and q > now then left = q - now else p = '' end
  local state = 'closed'
  if u > 0 then state = 'open' end
  return {member, state, string.format('%.6f', math.max(u - now, 0)), tostring(num(h, 't')),
          redis.call('HGET', h, 'k') or '', tostring(num(h, 'f')), p, string.format('%.6f', left),
          tostring(num(h, 'v'))}
end
-- the record after a change, published on the channel for every replica
local function published(h, member, seq, channel)
  local rec = record(h, member, seq)
  redis.call('PUBLISH', channel, cjson.encode(rec))
  return rec
end
local function change(h, seq, ...)
  redis.call('HSET', h, 'v', redis.call('INCR', seq), ...)
  local u, q, m = num(h, 'u'), num(h, 'q'), num(h, 'm')
  redis.call('PEXPIRE', h, math.ceil((math.max(u, q, now) - now + math.max(m, 1)) * 1000))
end
"""

# KEYS: record, index of open circuits, version counter. ARGV: member, pub/sub channel, threshold,
# cooldown, max cooldown, Retry-After, cause, probe (1/0), owner, memory seconds.
FAIL = (
    PRELUDE
    + """
local h, member = KEYS[1], ARGV[1]
if num(h, 'u') > 0 then
  if ARGV[8] ~= '1' or redis.call('HGET', h, 'p') ~= ARGV[9] then
    return record(h, member, KEYS[3])  -- in flight before it opened: neither counts nor extends
  end
else
  redis.call('HSET', h, 'm', ARGV[10])
  local failures = redis.call('HINCRBY', h, 'f', 1)
  if failures < tonumber(ARGV[3]) then
    change(h, KEYS[3])
    local rec = published(h, member, KEYS[3], ARGV[2])
    return rec
  end
end
local trips, memory = num(h, 't'), tonumber(ARGV[10])
if trips > 0 and now - num(h, 'l') > memory then trips = 0 end
trips = trips + 1
local cooldown = tonumber(ARGV[4]) * 2 ^ math.min(trips - 1, 16)
cooldown = math.min(math.max(cooldown, tonumber(ARGV[6])), tonumber(ARGV[5]))
redis.call('HSET', h, 'm', ARGV[10])
change(h, KEYS[3], 'f', 0, 'u', string.format('%.6f', now + cooldown), 't', trips,
       'l', string.format('%.6f', now), 'k', ARGV[7], 'p', '', 'q', 0)
redis.call('SADD', KEYS[2], member)
local rec = published(h, member, KEYS[3], ARGV[2])
rec[10] = '1'
return rec
"""
)

# KEYS: record, index, version counter. ARGV: member, pub/sub channel, owner, probe (1/0).
SUCCEED = (
    PRELUDE
    + """
local h, member = KEYS[1], ARGV[1]
if num(h, 'u') > 0 then
  if ARGV[4] ~= '1' or redis.call('HGET', h, 'p') ~= ARGV[3] then
    return record(h, member, KEYS[3])  -- only the probe closes a circuit
  end
  change(h, KEYS[3], 'u', 0, 'f', 0, 'p', '', 'q', 0)  -- trips stay: a flapping upstream backs off
  redis.call('SREM', KEYS[2], member)
  local rec = published(h, member, KEYS[3], ARGV[2])
  rec[10] = '1'
  return rec
end
if num(h, 'f') > 0 then
  change(h, KEYS[3], 'f', 0)
  local rec = published(h, member, KEYS[3], ARGV[2])
  return rec
end
return record(h, member, KEYS[3])
"""
)

# KEYS: record, version counter. ARGV: member, owner, seconds, pub/sub channel. The probe of a
# circuit whose cooldown is over, for this owner, unless another owner holds an unexpired claim.
CLAIM = (
    PRELUDE
    + """
local h, member = KEYS[1], ARGV[1]
local u = num(h, 'u')
if u > 0 and now >= u then
  local p = redis.call('HGET', h, 'p') or ''
  if p == '' or p == ARGV[2] or num(h, 'q') <= now then
    change(h, KEYS[2], 'p', ARGV[2], 'q', string.format('%.6f', now + tonumber(ARGV[3])))
    local rec = published(h, member, KEYS[2], ARGV[4])
    return rec
  end
end
return record(h, member, KEYS[2])
"""
)

# KEYS: record, version counter. ARGV: member, owner, seconds (0: give the claim up), pub/sub
# channel.
HOLD = (
    PRELUDE
    + """
local h, member = KEYS[1], ARGV[1]
if num(h, 'u') > 0 and redis.call('HGET', h, 'p') == ARGV[2] then
  local seconds = tonumber(ARGV[3])
  if seconds > 0 then
    change(h, KEYS[2], 'q', string.format('%.6f', now + seconds))
  else
    change(h, KEYS[2], 'p', '', 'q', 0)
  end
  local rec = published(h, member, KEYS[2], ARGV[4])
  return rec
end
return record(h, member, KEYS[2])
"""
)

# KEYS: index, version counter. ARGV: record key prefix. Every open circuit's record, flattened. It
# reads records it cannot name in KEYS (one Redis server, as everything here; not Redis Cluster).
SNAPSHOT = (
    PRELUDE
    + """
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = ARGV[1] .. member
  if num(h, 'u') > 0 then
    for _, field in ipairs(record(h, member, KEYS[2])) do out[#out + 1] = field end
  else
    redis.call('SREM', KEYS[1], member)
  end
end
return out
"""
)
FIELDS = 9
