-- wrk script: every request carries the method, Content-Type and body file
-- given after `--`, e.g.
--   wrk -s body.lua http://127.0.0.1:8080/anything -- POST application/json body.json
-- The request is formatted once per wrk thread (wrk.init calls init first).
function init(args)
   local file = assert(io.open(args[3], "rb"))
   wrk.method = args[1]
   wrk.headers["Content-Type"] = args[2]
   wrk.body = file:read("*a")
   file:close()
end
