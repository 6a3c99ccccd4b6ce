-- wrk script for bench/mutations.sh: each request is GET <path of the URL given to wrk>?id=<n>,
-- n random in 1..1000 (the rows of its counters table), so that the connections update rows
-- spread over the table instead of all waiting for the lock on one row.
function init(args)
  math.randomseed(os.time())
end

function request()
  return wrk.format("GET", wrk.path .. "?id=" .. math.random(1, 1000))
end
