-- A money flow per connection (wrk runs one connection per thread here, so a thread's
-- state is its connection's): booking -> card hold -> release (FLOW=escrow) or
-- booking -> card hold -> full refund by the worker (FLOW=refund). Each thread acts for
-- its own client and worker (BENCH_PARTIES, a Lua file written by bench/api.py), so the
-- only rows the flows share are the platform's: provider clearing and fee revenue.

local parties = dofile(os.getenv("BENCH_PARTIES"))
local flow = os.getenv("FLOW") or "escrow"
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
end

local step, booking, payment, me = 1, nil, nil, nil

function init(args)
  me = parties[((index or 1) - 1) % #parties + 1]
end

local function post(path, token, body)
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

function request()
  if step == 1 then
    return post("/api/v1/bookings", me.client,
      '{"worker_id":' .. me.worker_id .. ',"title":"bench","amount":"10.00"}')
  elseif step == 2 then
    return post("/api/v1/payments/stripe/payment-intent", me.client,
      '{"booking_id":' .. booking .. ',"amount":"10.00","currency":"USD",'
      .. '"payment_method":"pm_card_visa"}')
  elseif flow == "refund" then
    return post("/api/v1/payments/refund", me.worker,
      '{"payment_id":' .. payment .. ',"reason":"bench"}')
  else
    return post("/api/v1/payments/" .. payment .. "/release", me.client, "")
  end
end

function response(status, headers, body)
  if status >= 300 then
    step = 1 -- start a new flow; wrk counts the answer among its non-2xx
    return
  end
  if step == 1 then
    booking = body:match('"id":(%d+)')
    step = 2
  elseif step == 2 then
    payment = body:match('"id":(%d+)')
    step = 3
  else
    step = 1
  end
end
