-- Cycle GET /check_ip/<address> over the addresses in $ADDR_FILE, one per line.
local addrs = {}
for line in io.lines(os.getenv("ADDR_FILE")) do addrs[#addrs + 1] = line end
local i = 0
request = function()
  i = i % #addrs + 1
  return wrk.format("GET", "/check_ip/" .. addrs[i])
end
