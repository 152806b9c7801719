// A small HTTP/1.1 server for the control plane's REST surface, built for clients that are slow,
// careless or hostile.
//
// One I/O thread owns every connection while it waits for, or reads, a request: it reads without
// blocking, so a client that trickles its request holds a socket and a buffer, never a thread.
// Only a request that has fully arrived goes to the bounded pool of workers; the worker writes the
// answer and hands the connection back, and bytes the client sent ahead (pipelined requests) are
// answered next, in order. Every phase has a deadline: the head must arrive within
// `head_timeout` of its first byte, the body at `min_body_bytes_per_second` after a grace, an idle
// keep-alive connection lasts `idle_timeout`, and an answer must be taken at the same minimum
// rate. Connections are counted per client address and in total; past either limit a new one is
// answered 429 or 503 and closed. A streamed answer (a watch) runs on a thread of its own, at
// most `max_streams` at once, so long-lived streams never take the workers.
//
// Framing is by Content-Length only: a request with any Transfer-Encoding header, control
// characters in its head, or a path over 2 KiB is refused before it is routed.
//
// Non-goals: TLS (terminate it in front, or in the trust work's listener), HTTP/2, chunked request
// bodies (a request sends Content-Length), absolute-form targets for proxies, and compression.
// Clients are told apart by address only: behind a proxy every client shares the proxy's, and
// the per-client limits become limits on the proxy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tenon::http {

struct Header {
  std::string name;
  std::string value;
};

struct Request {
  std::string method;   // as sent: "GET", "POST", ...
  std::string target;   // the request target as sent: path, then '?' and the query
  std::string path;     // the target up to '?'
  std::string version;  // "HTTP/1.1" or "HTTP/1.0"
  std::vector<Header> headers;
  std::string body;
  std::string peer;  // the client's address, without the port
  // The route's match: [0] the whole path, then each capture group.
  std::vector<std::string> matches;

  // The first header of that name (names compare without case), or "" when there is none.
  std::string header(absl::string_view name) const;
  // A query parameter's whole value (up to the next '&', so "selector=a=b" is "a=b"), %XX and
  // '+' decoded; nullopt when the query does not name it.
  std::optional<std::string> query_value(absl::string_view key) const;
};

// Writes the pieces of a streamed answer; false once the client has gone or takes too long.
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  virtual bool write(absl::string_view bytes) = 0;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::vector<Header> headers;
  std::string body;
  // When set, the answer is streamed (chunked) instead of `body`: `stream` is called again and
  // again on a thread of its own until it returns false (it is done, or the writer failed). The
  // connection closes after a streamed answer.
  std::function<bool(StreamWriter&)> stream;
};

struct ServerLimits {
  size_t workers = 16;                     // threads that run handlers
  size_t max_connections = 1024;           // open at once, all clients together
  size_t max_connections_per_client = 64;  // open at once from one address
  size_t max_streams = 64;                 // streamed answers at once
  size_t max_streams_per_client = 16;      // streamed answers at once to one address
  // Requests of one address that workers run at once; more wait, complete, until one is answered
  // (so a client that never reads its answers holds at most this many workers).
  size_t max_busy_per_client = 4;
  // Declared request bodies being read or handled at once, all connections together; a request
  // beyond is answered 503 with Retry-After before its body is read.
  size_t max_buffered_body_bytes = 256 << 20;
  size_t max_head_bytes = 16 << 10;  // request line and headers
  size_t max_headers = 100;
  size_t max_body_bytes = 16 << 20;
  absl::Duration head_timeout = absl::Seconds(10);  // first byte of a request to its blank line
  absl::Duration idle_timeout = absl::Seconds(5);   // keep-alive, between requests
  // Bodies and answers move at least this fast, after a grace of `head_timeout`.
  size_t min_body_bytes_per_second = 64 << 10;
};

// What the server has refused or cut off since it started, by cause.
struct ServerCounters {
  uint64_t connections_accepted = 0;
  uint64_t refused_per_client_limit = 0;
  uint64_t refused_connection_limit = 0;
  uint64_t refused_stream_limit = 0;
  uint64_t timed_out = 0;         // head, body or idle deadline passed
  uint64_t malformed = 0;         // 400, 411, 417, 431 or 505 before a handler ran
  uint64_t requests_handled = 0;  // handed to a route (or answered 404/405)
};

class Server {
 public:
  using Handler = std::function<void(const Request&, Response&)>;
  // Runs once a request's head is in, before its body is read: a response refuses the request
  // (the connection then closes, the body unread); nullopt lets it go on.
  using HeadCheck = std::function<std::optional<Response>(const Request&)>;
  // Writes the server's own refusals (408, 413, 429, ...) in the application's error format.
  using ErrorRenderer = std::function<void(int status, absl::string_view message, Response&)>;

  explicit Server(ServerLimits limits = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Before start(). `path_pattern` is an ECMAScript regular expression the whole path must
  // match; its groups become Request::matches. A GET route also answers HEAD (without the body).
  void route(std::string method, const std::string& path_pattern, Handler handler);
  void set_head_check(HeadCheck check);
  void set_error_renderer(ErrorRenderer renderer);

  // Listens on host:port (port 0 picks one) and serves on threads of its own; returns the port.
  absl::StatusOr<int> start(const std::string& host, int port);
  // Closes the listener and every connection, waits for workers and streams to finish.
  void stop();
  ServerCounters counters() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tenon::http
