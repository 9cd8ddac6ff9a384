-- wrk script: the bench's nine search queries, each asking for a fresh
-- ranking (X-Lokiz-Min-Position: 1), in turn. Used by scripts/search-ab.sh.
local paths = {
  "/v1/search/videos?q=glitch", "/v1/search/videos?q=grandma%20reacts",
  "/v1/search/videos?q=vaporwave", "/v1/search/videos?q=beat%20drop",
  "/v1/search/videos?q=%EA%B3%A0%EC%96%91%EC%9D%B4",
  "/v1/search/videos?q=nothingmatchesthis", "/v1/search/users?q=kosmic%20phenix",
  "/v1/search/users?q=neon", "/v1/search?q=synth" }
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1], {["X-Lokiz-Min-Position"] = "1"})
end
