"""What the bench sends: the DashScope requests, and the wrk Lua scripts that send them.

Every server in the bench (paddock, the bare ceiling, Prism, WireMock) gets
byte for byte the same create and poll requests, so the bodies and headers
are defined once here and the Lua scripts are generated from them.

Three kinds of script:

* ``static``: one fixed request (the throughput rounds; wrk's fastest path,
  no Lua per response);
* ``fill``: creates under a rotating set of API keys that stop after N
  answers (the scale phase fills the store without tripping a per-key cap);
* ``mixed``: the life of a task as a client lives it: create, poll twice,
  download the video the poll links to; stops after N answers or at wrk's
  ``-d`` (the soak and memory-flatness phases).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "CREATE_BODY",
    "CREATE_HEADERS",
    "CREATE_PATH",
    "POLL_HEADERS",
    "POLL_PREFIX",
    "fill_script",
    "lua_string",
    "mixed_script",
    "static_script",
]

API_KEY = "sk-bench"
CREATE_PATH = "/api/v1/services/aigc/video-generation/video-synthesis"
POLL_PREFIX = "/api/v1/tasks/"
# The documented image-to-video example, byte for byte what clients send.
CREATE_BODY = json.dumps(
    {
        "model": "happyhorse-1.0-i2v",
        "input": {
            "prompt": "A cat running on the grass",
            "media": [
                {
                    "type": "first_frame",
                    "url": "https://cdn.translate.alibaba.com/r/wanx-demo-1.png",
                }
            ],
        },
        "parameters": {"resolution": "720P", "duration": 5},
    },
    separators=(",", ":"),
)
CREATE_HEADERS = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json",
    "X-DashScope-Async": "enable",
}
POLL_HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# Polls per task in the mixed traffic: a client polls until done and often once more.
POLLS_PER_TASK = 2


def lua_string(text: str) -> str:
    """A Lua long-bracket literal for ``text``, with a level that cannot clash with it.

    Level 1 at least, and callers put a space after an indexing ``[``: Lua lexes ``[[`` as the
    opening of a level-0 string, so ``headers[[[x]]]`` silently means something else.
    """
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def _lua_table(mapping: dict[str, str]) -> str:
    return (
        "{" + ", ".join(f"[ {lua_string(k)} ] = {lua_string(v)}" for k, v in mapping.items()) + "}"
    )


def static_script(path: Path, method: str, headers: dict[str, str], body: str | None) -> Path:
    """One fixed request; wrk sends it to the URL on its command line."""
    lines = [f'wrk.method = "{method}"']
    lines += [f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body)}")
    path.write_text("\n".join(lines) + "\n")
    return path


# Shared by the counting scripts: after ``limit`` answers (``wrk ... -- LIMIT``,
# per thread; 0 means run until -d) the thread stops and says so on stdout, and
# bench.wrk interrupts wrk, which otherwise sleeps out its -d. At the end the
# named counters go on one ``bench-counts`` line that bench.wrk parses.
_COUNTING = """
local limit, answered = 0, 0
local threads = {}
function init(args) limit = tonumber(args[1]) or 0 end
function setup(thread) table.insert(threads, thread) end
local function count_answer()
  answered = answered + 1
  if limit > 0 and answered == limit then
    io.write("bench-limit\\n"); io.flush()
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  local parts = {}
  for _, name in ipairs(counters) do
    local total = 0
    for _, t in ipairs(threads) do total = total + (t:get(name) or 0) end
    table.insert(parts, name .. "=" .. total)
  end
  io.write("bench-counts " .. table.concat(parts, " ") .. "\\n")
end
"""

_FILL = """
counters = {"created", "unexpected"}
created, unexpected = 0, 0
local k = 0
function request()
  k = k % #keys + 1
  create_headers["Authorization"] = "Bearer " .. keys[k]
  return wrk.format("POST", create_path, create_headers, create_body)
end
function response(status, headers, body)
  count_answer()
  if status ~= 200 then return end  -- wrk counts it among non-2xx
  if body:find('"task_id"', 1, true) then created = created + 1
  else unexpected = unexpected + 1 end
end
"""

# Queues are drained before a new task is created, so they stay within a few
# entries per connection whatever the run length: memory in wrk is bounded too.
_MIXED = """
counters = {"creates", "polls", "downloads", "unexpected"}
creates, polls, downloads, unexpected = 0, 0, 0, 0
local to_poll, ph, pt = {}, 1, 0
local to_fetch, fh, ft = {}, 1, 0
local unfetched = {}
local no_headers = {}
function request()
  if fh <= ft then
    local path = to_fetch[fh]; to_fetch[fh] = nil; fh = fh + 1
    return wrk.format("GET", path, no_headers)
  end
  if ph <= pt then
    local id = to_poll[ph]; to_poll[ph] = nil; ph = ph + 1
    return wrk.format("GET", poll_prefix .. id, poll_headers)
  end
  return wrk.format("POST", create_path, create_headers, create_body)
end
local function poll_later(id)
  pt = pt + 1; to_poll[pt] = id
end
function response(status, headers, body)
  count_answer()
  if status ~= 200 then return end  -- wrk counts it among non-2xx
  if body:sub(5, 8) == "ftyp" then downloads = downloads + 1; return end
  local id = body:match('"task_id":"([^"]+)"')
  if id == nil then unexpected = unexpected + 1; return end
  local url = body:match('"video_url":"([^"]+)"')
  if url ~= nil then
    polls = polls + 1
    if unfetched[id] then
      unfetched[id] = nil
      local path = url:match("^%a+://[^/]+(/.*)$")
      if path == nil then unexpected = unexpected + 1; return end
      ft = ft + 1; to_fetch[ft] = path
    end
  elseif body:find('"submit_time"', 1, true) then
    polls = polls + 1; poll_later(id)  -- polled before it finished: poll again
  else
    creates = creates + 1; unfetched[id] = true
    for _ = 1, polls_per_task do poll_later(id) end
  end
end
"""


def _prelude(prefix: str) -> str:
    return "\n".join(
        [
            f"create_path = {lua_string(prefix + CREATE_PATH)}",
            f"create_headers = {_lua_table(CREATE_HEADERS)}",
            f"create_body = {lua_string(CREATE_BODY)}",
            f"poll_prefix = {lua_string(prefix + POLL_PREFIX)}",
            f"poll_headers = {_lua_table(POLL_HEADERS)}",
            f"polls_per_task = {POLLS_PER_TASK}",
        ]
    )


def fill_script(path: Path, prefix: str, keys: list[str]) -> Path:
    """Creates under ``keys`` in turn; ``prefix`` is the provider's path on the server."""
    keys_lua = "keys = {" + ", ".join(lua_string(k) for k in keys) + "}"
    path.write_text("\n".join([_prelude(prefix), keys_lua, _COUNTING, _FILL]))
    return path


def mixed_script(path: Path, prefix: str) -> Path:
    """Create, poll ``POLLS_PER_TASK`` times, download; needs tasks done at their first poll."""
    path.write_text("\n".join([_prelude(prefix), _COUNTING, _MIXED]))
    return path
