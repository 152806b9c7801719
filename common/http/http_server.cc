// See http_server.h. Ownership of a connection moves between threads, never shared: the I/O
// thread holds it while reading; a worker while it answers; a stream thread while it streams.
// Each hands it back through `returned` (and the wake-up eventfd); only the I/O thread closes a
// connection, so the per-client counts live on that thread alone.
#include "http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <regex>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tenon::http {
namespace {

absl::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 499:
      return "Client Closed Request";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

bool is_token(absl::string_view text) {
  if (text.empty()) return false;
  for (const char c : text) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        absl::string_view("!#$%&'*+-.^_`|~").find(c) == absl::string_view::npos) {
      return false;
    }
  }
  return true;
}

// Control characters other than a tab: never part of a request line or header value (a CR, LF
// or NUL inside one is how a request is smuggled past a proxy that splits lines differently).
bool has_control_characters(absl::string_view text) {
  for (const char c : text) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && byte != '\t') || byte == 0x7f) return true;
  }
  return false;
}

// Sends all of `bytes` by `deadline` on a non-blocking socket; false when the peer is gone or
// too slow.
bool send_all(int fd, absl::string_view bytes, absl::Time deadline) {
  while (!bytes.empty()) {
    const ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent > 0) {
      bytes.remove_prefix(static_cast<size_t>(sent));
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd wait{fd, POLLOUT, 0};
    const int ready = ::poll(
        &wait, 1, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left), 1000)) + 1);
    if (ready < 0 && errno != EINTR) return false;
    if (ready > 0 && (wait.revents & (POLLERR | POLLHUP))) return false;
  }
  return true;
}

std::string percent_decode(absl::string_view text) {
  std::string value;
  value.reserve(text.size());
  for (size_t at = 0; at < text.size(); ++at) {
    int byte = 0;
    if (text[at] == '%' && at + 2 < text.size() &&
        absl::ascii_isxdigit(static_cast<unsigned char>(text[at + 1])) &&
        absl::ascii_isxdigit(static_cast<unsigned char>(text[at + 2])) &&
        absl::SimpleHexAtoi(text.substr(at + 1, 2), &byte)) {
      value.push_back(static_cast<char>(byte));
      at += 2;
    } else {
      value.push_back(text[at] == '+' ? ' ' : text[at]);
    }
  }
  return value;
}

// How long a refused connection's further bytes are read and dropped before it closes.
constexpr absl::Duration kDrainTime = absl::Seconds(2);
// The longest path routed (route patterns are regular expressions, whose matching recurses per
// character in libstdc++).
constexpr size_t kMaxPathBytes = 2048;

struct Route {
  std::string method;
  std::regex pattern;
  Server::Handler handler;
};

// One client connection. While `busy` a worker or a stream thread has it; otherwise the I/O
// thread reads into `received` and parses from it.
struct Connection {
  int fd = -1;
  std::string peer;
  std::string received;  // bytes read and not yet consumed by a request
  // kDraining: refused and half-closed; what the client still sends is read and dropped for a
  // moment, so that it reads the refusal instead of a reset.
  enum class Phase { kIdle, kHead, kBody, kBusy, kDraining } phase = Phase::kIdle;
  absl::Time deadline;
  Request request;  // the head, while the body is read
  size_t body_length = 0;
  bool close_after = false;     // answer this request, then close
  bool peer_closed = false;     // the client sent FIN: answer what is complete, then close
  size_t reserved_bytes = 0;    // of the server's body budget, for the body being read or handled
  bool streaming = false;       // a stream thread has it
  std::string request_version;  // of the request being answered
};

}  // namespace

std::string Request::header(absl::string_view name) const {
  for (const Header& header : headers) {
    if (absl::EqualsIgnoreCase(header.name, name)) return header.value;
  }
  return "";
}

std::optional<std::string> Request::query_value(absl::string_view key) const {
  const size_t question = target.find('?');
  if (question == std::string::npos) return std::nullopt;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(target).substr(question + 1), '&')) {
    const size_t equals = part.find('=');
    const std::string name = percent_decode(part.substr(0, equals));
    if (name != key) continue;
    return equals == absl::string_view::npos ? std::string()
                                             : percent_decode(part.substr(equals + 1));
  }
  return std::nullopt;
}

struct Server::State {
  explicit State(ServerLimits server_limits) : limits(server_limits) {}

  ServerLimits limits;
  std::vector<Route> routes;
  HeadCheck head_check;
  ErrorRenderer error_renderer;

  int listen_fd = -1;
  int epoll_fd = -1;
  int wake_fd = -1;
  std::thread io_thread;
  std::vector<std::thread> workers;
  std::atomic<bool> stopping{false};

  // The I/O thread's own.
  std::unordered_map<int, std::shared_ptr<Connection>> connections;
  std::map<std::string, size_t> per_client;
  std::optional<absl::Time> accept_paused_until;
  size_t reserved_body_bytes = 0;  // declared bodies being read or handled, all connections
  // Requests with a worker, per client address, and complete requests waiting because their
  // client already has max_busy_per_client (a client that never reads its answers holds at most
  // that many workers).
  std::map<std::string, size_t> busy_per_client;
  std::map<std::string, std::deque<std::shared_ptr<Connection>>> deferred;

  std::mutex mutex;  // guards what follows
  std::condition_variable work_ready;
  std::deque<std::shared_ptr<Connection>> ready;     // requests waiting for a worker
  std::deque<std::shared_ptr<Connection>> returned;  // back to the I/O thread after an answer
  std::vector<std::string> released_peers;           // clients whose request went on as a stream
  std::vector<int> all_fds;                          // every open connection, for stop()
  std::list<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> streams;
  size_t streams_open = 0;
  std::map<std::string, size_t> streams_per_client;
  ServerCounters counters;

  void count(uint64_t ServerCounters::*field) {
    std::lock_guard lock(mutex);
    ++(counters.*field);
  }

  void render_error(int status, absl::string_view message, Response& response) const {
    response = Response();
    response.status = status;
    if (error_renderer) {
      error_renderer(status, message, response);
      response.status = status;
    } else {
      response.body = absl::StrCat(message, "\n");
    }
  }

  // The bytes of an answer's status line and headers.
  static std::string head_bytes(const Response& response, size_t content_length, bool chunked,
                                bool close) {
    std::string head =
        absl::StrCat("HTTP/1.1 ", response.status, " ", reason_phrase(response.status), "\r\n");
    absl::StrAppend(&head, "Content-Type: ", response.content_type, "\r\n");
    if (chunked) {
      absl::StrAppend(&head, "Transfer-Encoding: chunked\r\n");
    } else {
      absl::StrAppend(&head, "Content-Length: ", content_length, "\r\n");
    }
    for (const Header& header : response.headers) {
      absl::StrAppend(&head, header.name, ": ", header.value, "\r\n");
    }
    if (close) absl::StrAppend(&head, "Connection: close\r\n");
    absl::StrAppend(&head, "\r\n");
    return head;
  }

  absl::Time answer_deadline(size_t bytes) const {
    return absl::Now() + limits.head_timeout +
           absl::Seconds(static_cast<double>(bytes) / static_cast<double>(std::max<size_t>(
                                                          1, limits.min_body_bytes_per_second)));
  }

  // ---- The I/O thread ----

  void wake() {
    const uint64_t one = 1;
    (void)!::write(wake_fd, &one, sizeof(one));
  }

  // A refusal written without waiting (best effort: the connection closes right after).
  void refuse_now(int fd, int status, absl::string_view message) {
    Response response;
    render_error(status, message, response);
    const std::string bytes =
        head_bytes(response, response.body.size(), false, true) + response.body;
    (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }

  void close_connection(const std::shared_ptr<Connection>& connection) {
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, connection->fd, nullptr);
    {
      std::lock_guard lock(mutex);
      all_fds.erase(std::remove(all_fds.begin(), all_fds.end(), connection->fd), all_fds.end());
    }
    ::close(connection->fd);
    connections.erase(connection->fd);
    auto client = per_client.find(connection->peer);
    if (client != per_client.end() && --client->second == 0) per_client.erase(client);
    release_body(*connection);
  }

  void release_body(Connection& connection) {
    reserved_body_bytes -= connection.reserved_bytes;
    connection.reserved_bytes = 0;
  }

  void watch_readable(const std::shared_ptr<Connection>& connection, int operation) {
    epoll_event event{};
    event.events = EPOLLIN | EPOLLRDHUP;
    event.data.fd = connection->fd;
    ::epoll_ctl(epoll_fd, operation, connection->fd, &event);
  }

  void accept_all() {
    while (!stopping) {
      sockaddr_storage address{};
      socklen_t length = sizeof(address);
      const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&address), &length,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors or memory: the listener would stay readable and spin this thread;
          // stop listening for a moment (connections wait in the backlog).
          ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
          accept_paused_until = absl::Now() + absl::Milliseconds(100);
        }
        return;
      }
      char host[NI_MAXHOST] = {0};
      ::getnameinfo(reinterpret_cast<sockaddr*>(&address), length, host, sizeof(host), nullptr, 0,
                    NI_NUMERICHOST);
      const std::string peer = host;
      if (connections.size() >= limits.max_connections) {
        count(&ServerCounters::refused_connection_limit);
        refuse_now(fd, 503, "too many connections to this server");
        ::close(fd);
        continue;
      }
      if (per_client[peer] >= limits.max_connections_per_client) {
        count(&ServerCounters::refused_per_client_limit);
        refuse_now(fd, 429,
                   absl::StrCat("more than ", limits.max_connections_per_client,
                                " connections from ", peer));
        ::close(fd);
        if (per_client[peer] == 0) per_client.erase(peer);
        continue;
      }
      count(&ServerCounters::connections_accepted);
      ++per_client[peer];
      auto connection = std::make_shared<Connection>();
      connection->fd = fd;
      connection->peer = peer;
      connection->deadline = absl::Now() + limits.idle_timeout;
      connections[fd] = connection;
      {
        std::lock_guard lock(mutex);
        all_fds.push_back(fd);
      }
      watch_readable(connection, EPOLL_CTL_ADD);
    }
  }

  // Refuses the request on `connection` before a handler sees it, and closes.
  void refuse_request(const std::shared_ptr<Connection>& connection, int status,
                      absl::string_view message) {
    Response response;
    render_error(status, message, response);
    refuse_with(connection, response);
  }

  void refuse_with(const std::shared_ptr<Connection>& connection, const Response& response) {
    const std::string bytes =
        head_bytes(response, response.body.size(), false, true) + response.body;
    (void)!::send(connection->fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(connection->fd, SHUT_WR);
    connection->received.clear();
    connection->phase = Connection::Phase::kDraining;
    connection->deadline = absl::Now() + kDrainTime;
    if (connection->peer_closed) close_connection(connection);
  }

  // Parses the head at the front of `received`. Returns false when the connection was refused.
  bool parse_head(const std::shared_ptr<Connection>& connection, size_t head_end) {
    Connection& c = *connection;
    const std::string head = c.received.substr(0, head_end);
    c.received.erase(0, head_end + 4);
    std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
    c.request = Request();
    c.request.peer = c.peer;
    std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
    if (parts.size() != 3 || !is_token(parts[0]) || parts[1].empty() || parts[1][0] != '/') {
      count(&ServerCounters::malformed);
      refuse_request(connection, 400, "malformed request line");
      return false;
    }
    if (has_control_characters(lines[0])) {
      count(&ServerCounters::malformed);
      refuse_request(connection, 400, "control characters in the request line");
      return false;
    }
    if (parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0") {
      count(&ServerCounters::malformed);
      refuse_request(connection, 505, "only HTTP/1.1 and HTTP/1.0 are served");
      return false;
    }
    c.request.method = std::string(parts[0]);
    c.request.target = std::string(parts[1]);
    c.request.path = c.request.target.substr(0, c.request.target.find('?'));
    c.request.version = std::string(parts[2]);
    if (c.request.path.size() > kMaxPathBytes) {
      count(&ServerCounters::malformed);
      refuse_request(connection, 414, absl::StrCat("a path over ", kMaxPathBytes, " bytes"));
      return false;
    }
    if (lines.size() - 1 > limits.max_headers) {
      count(&ServerCounters::malformed);
      refuse_request(connection, 431, absl::StrCat("more than ", limits.max_headers, " headers"));
      return false;
    }
    std::optional<uint64_t> content_length;
    for (size_t i = 1; i < lines.size(); ++i) {
      const absl::string_view line = lines[i];
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos || !is_token(line.substr(0, colon)) ||
          has_control_characters(line)) {
        count(&ServerCounters::malformed);
        refuse_request(connection, 400, absl::StrCat("malformed header line ", i));
        return false;
      }
      Header header{std::string(line.substr(0, colon)),
                    std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)))};
      if (absl::EqualsIgnoreCase(header.name, "Content-Length")) {
        uint64_t length = 0;
        if (header.value.empty() || header.value.size() > 19 ||
            !std::all_of(header.value.begin(), header.value.end(), absl::ascii_isdigit) ||
            !absl::SimpleAtoi(header.value, &length) ||
            (content_length.has_value() && *content_length != length)) {
          count(&ServerCounters::malformed);
          refuse_request(connection, 400, "malformed or conflicting Content-Length");
          return false;
        }
        content_length = length;
      }
      c.request.headers.push_back(std::move(header));
    }
    // Any Transfer-Encoding at all, even an empty one before a second: framing is by
    // Content-Length only, and a proxy in front must not read this request another way.
    if (std::any_of(c.request.headers.begin(), c.request.headers.end(), [](const Header& header) {
          return absl::EqualsIgnoreCase(header.name, "Transfer-Encoding");
        })) {
      count(&ServerCounters::malformed);
      refuse_request(connection, 411, "send the body with a Content-Length, not chunked");
      return false;
    }
    const std::string connection_header = absl::AsciiStrToLower(c.request.header("Connection"));
    c.close_after =
        absl::StrContains(connection_header, "close") ||
        (c.request.version == "HTTP/1.0" && !absl::StrContains(connection_header, "keep-alive"));
    if (head_check) {
      std::optional<Response> refusal = head_check(c.request);
      if (refusal.has_value()) {
        refuse_with(connection, *refusal);
        return false;
      }
    }
    c.body_length = content_length.value_or(0);
    if (c.body_length > limits.max_body_bytes) {
      refuse_request(connection, 413,
                     absl::StrCat("request body of ", c.body_length, " bytes; the limit is ",
                                  limits.max_body_bytes));
      return false;
    }
    if (reserved_body_bytes + c.body_length > limits.max_buffered_body_bytes) {
      Response busy;
      render_error(503, "too many request bodies in flight; retry", busy);
      busy.headers.push_back({"Retry-After", "1"});
      refuse_with(connection, busy);
      return false;
    }
    c.reserved_bytes = c.body_length;
    reserved_body_bytes += c.body_length;
    const std::string expect = c.request.header("Expect");
    if (!expect.empty()) {
      if (!absl::EqualsIgnoreCase(expect, "100-continue")) {
        count(&ServerCounters::malformed);
        refuse_request(connection, 417, "the only expectation served is 100-continue");
        return false;
      }
      if (c.body_length > 0 && c.received.empty() && c.request.version == "HTTP/1.1") {
        static constexpr absl::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        (void)!::send(c.fd, kContinue.data(), kContinue.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      }
    }
    c.phase = Connection::Phase::kBody;
    c.deadline =
        absl::Now() + limits.head_timeout +
        absl::Seconds(static_cast<double>(c.body_length) /
                      static_cast<double>(std::max<size_t>(1, limits.min_body_bytes_per_second)));
    return true;
  }

  // Moves `connection` on with what it has received: a head, a body, a request for a worker.
  void advance(const std::shared_ptr<Connection>& connection) {
    Connection& c = *connection;
    if (c.phase == Connection::Phase::kIdle && !c.received.empty()) {
      c.phase = Connection::Phase::kHead;
      c.deadline = absl::Now() + limits.head_timeout;
    }
    if (c.phase == Connection::Phase::kHead) {
      const size_t head_end = c.received.find("\r\n\r\n");
      if (head_end == std::string::npos || head_end > limits.max_head_bytes) {
        if (c.received.size() > limits.max_head_bytes + 3) {
          count(&ServerCounters::malformed);
          refuse_request(connection, 431,
                         absl::StrCat("request head over ", limits.max_head_bytes, " bytes"));
        } else if (c.peer_closed) {
          close_connection(connection);
        }
        return;
      }
      if (!parse_head(connection, head_end)) return;
    }
    if (c.phase == Connection::Phase::kBody) {
      if (c.received.size() < c.body_length) {
        if (c.peer_closed) close_connection(connection);
        return;
      }
      if (c.received.size() == c.body_length) {
        c.request.body = std::move(c.received);
        c.received.clear();
      } else {
        c.request.body = c.received.substr(0, c.body_length);
        c.received.erase(0, c.body_length);
      }
      if (c.peer_closed) c.close_after = true;
      c.phase = Connection::Phase::kBusy;
      ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c.fd, nullptr);
      if (busy_per_client[c.peer] >= std::max<size_t>(1, limits.max_busy_per_client)) {
        deferred[c.peer].push_back(connection);
        return;
      }
      hand_to_worker(connection);
    }
  }

  void hand_to_worker(const std::shared_ptr<Connection>& connection) {
    ++busy_per_client[connection->peer];
    {
      std::lock_guard lock(mutex);
      ready.push_back(connection);
    }
    work_ready.notify_one();
  }

  // A worker or stream is done with a request of `peer`'s: a request of theirs that waited goes.
  void done_with_request(const std::string& peer) {
    auto busy = busy_per_client.find(peer);
    if (busy != busy_per_client.end() && --busy->second == 0) busy_per_client.erase(busy);
    auto waiting = deferred.find(peer);
    if (waiting == deferred.end()) return;
    std::shared_ptr<Connection> next = std::move(waiting->second.front());
    waiting->second.pop_front();
    if (waiting->second.empty()) deferred.erase(waiting);
    hand_to_worker(next);
  }

  void on_readable(const std::shared_ptr<Connection>& connection) {
    char buffer[64 << 10];
    const ssize_t got = ::recv(connection->fd, buffer, sizeof(buffer), 0);
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      close_connection(connection);
      return;
    }
    if (connection->phase == Connection::Phase::kDraining) {
      if (got == 0) close_connection(connection);
      return;
    }
    if (got == 0) {
      connection->peer_closed = true;
      ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, connection->fd, nullptr);
    } else {
      connection->received.append(buffer, static_cast<size_t>(got));
    }
    advance(connection);
    if (connection->peer_closed && connections.count(connection->fd) != 0 &&
        connection->phase == Connection::Phase::kIdle) {
      close_connection(connection);
    }
  }

  void take_returned() {
    std::deque<std::shared_ptr<Connection>> back;
    std::vector<std::string> released;
    {
      std::lock_guard lock(mutex);
      back.swap(returned);
      released.swap(released_peers);
    }
    for (const std::string& peer : released) done_with_request(peer);
    for (const std::shared_ptr<Connection>& connection : back) {
      // Its worker (or stream) is done: the request's place and body budget are free again.
      release_body(*connection);
      if (!connection->streaming) done_with_request(connection->peer);
      if (connection->close_after || stopping) {
        close_connection(connection);
        continue;
      }
      connection->phase = Connection::Phase::kIdle;
      connection->deadline = absl::Now() + limits.idle_timeout;
      if (!connection->peer_closed) watch_readable(connection, EPOLL_CTL_ADD);
      advance(connection);  // a pipelined request may already be here
      if (connection->peer_closed && connections.count(connection->fd) != 0 &&
          connection->phase == Connection::Phase::kIdle) {
        close_connection(connection);
      }
    }
  }

  void expire(absl::Time now) {
    std::vector<std::shared_ptr<Connection>> late;
    for (const auto& [fd, connection] : connections) {
      if (connection->phase != Connection::Phase::kBusy && connection->deadline <= now) {
        late.push_back(connection);
      }
    }
    for (const std::shared_ptr<Connection>& connection : late) {
      if (connection->phase == Connection::Phase::kDraining) {
        close_connection(connection);
        continue;
      }
      count(&ServerCounters::timed_out);
      if (connection->phase == Connection::Phase::kIdle) {
        close_connection(connection);
      } else {
        refuse_request(connection, 408, "the request did not arrive in time");
      }
    }
  }

  void run_io() {
    epoll_event events[64];
    absl::Time next_expiry_scan = absl::Now();
    while (!stopping) {
      const int count_ready = ::epoll_wait(epoll_fd, events, 64, 100);
      for (int i = 0; i < count_ready; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wake_fd) {
          uint64_t drained = 0;
          (void)!::read(wake_fd, &drained, sizeof(drained));
        } else if (fd == listen_fd) {
          accept_all();
        } else {
          auto found = connections.find(fd);
          if (found == connections.end()) continue;
          std::shared_ptr<Connection> connection = found->second;
          if (connection->phase == Connection::Phase::kBusy) continue;
          on_readable(connection);
        }
      }
      take_returned();
      const absl::Time now = absl::Now();
      if (accept_paused_until.has_value() && now >= *accept_paused_until) {
        accept_paused_until.reset();
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = listen_fd;
        ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &event);
      }
      if (now >= next_expiry_scan) {
        expire(now);
        next_expiry_scan = now + absl::Milliseconds(100);
      }
    }
    std::vector<std::shared_ptr<Connection>> left;
    for (const auto& [fd, connection] : connections) {
      if (connection->phase != Connection::Phase::kBusy) left.push_back(connection);
    }
    for (const std::shared_ptr<Connection>& connection : left) close_connection(connection);
  }

  // ---- Workers and streams ----

  // Hands the connection back to the I/O thread.
  void give_back(const std::shared_ptr<Connection>& connection) {
    {
      std::lock_guard lock(mutex);
      returned.push_back(connection);
    }
    wake();
  }

  void dispatch(Request& request, Response& response) {
    try {
      dispatch_unguarded(request, response);
    } catch (const std::exception& error) {
      // A third-party library (the regex engine, a JSON parser) threw: the handler's failure, not
      // the server's.
      render_error(500, absl::StrCat("handler failed: ", error.what()), response);
    }
  }

  void dispatch_unguarded(Request& request, Response& response) {
    bool path_known = false;
    std::vector<std::string> allowed;
    for (const Route& route : routes) {
      std::smatch match;
      if (!std::regex_match(request.path, match, route.pattern)) continue;
      path_known = true;
      const bool method_matches =
          route.method == request.method || (route.method == "GET" && request.method == "HEAD");
      if (!method_matches) {
        allowed.push_back(route.method);
        continue;
      }
      request.matches.assign(match.begin(), match.end());
      route.handler(request, response);
      return;
    }
    if (!path_known) {
      render_error(404,
                   absl::StrCat("no such path: ", request.path.substr(0, 80),
                                request.path.size() > 80 ? "..." : ""),
                   response);
      return;
    }
    render_error(405,
                 absl::StrCat("method ", request.method, " is not served on ",
                              request.path.substr(0, 80), request.path.size() > 80 ? "..." : ""),
                 response);
    response.headers.push_back({"Allow", absl::StrJoin(allowed, ", ")});
  }

  // A streamed answer's pieces: chunks for HTTP/1.1; as they are for HTTP/1.0, whose answer then
  // ends when the connection closes.
  class PieceWriter : public StreamWriter {
   public:
    PieceWriter(State* state, int fd, bool chunked) : state_(state), fd_(fd), chunked_(chunked) {}
    bool write(absl::string_view bytes) override {
      if (bytes.empty()) return true;
      const std::string piece = chunked_
                                    ? absl::StrCat(absl::Hex(bytes.size()), "\r\n", bytes, "\r\n")
                                    : std::string(bytes);
      return !state_->stopping && send_all(fd_, piece, state_->answer_deadline(piece.size()));
    }

   private:
    State* state_;
    int fd_;
    bool chunked_;
  };

  void run_stream(const std::shared_ptr<Connection>& connection, Response& response) {
    const bool chunked = connection->request_version == "HTTP/1.1";
    std::string head = head_bytes(response, 0, chunked, true);
    if (!chunked) {
      // No length and no chunks: the answer ends when the connection closes.
      head.erase(head.find("Content-Length: 0\r\n"), strlen("Content-Length: 0\r\n"));
    }
    if (!send_all(connection->fd, head, answer_deadline(head.size()))) return;
    PieceWriter writer(this, connection->fd, chunked);
    try {
      while (!stopping && response.stream(writer)) {
      }
    } catch (const std::exception&) {
      return;  // the stream's source failed: the answer ends unterminated, as a broken stream
    }
    if (chunked) send_all(connection->fd, "0\r\n\r\n", answer_deadline(5));
  }

  void start_stream(const std::shared_ptr<Connection>& connection, Response response) {
    std::string refused;
    {
      std::lock_guard lock(mutex);
      for (auto it = streams.begin(); it != streams.end();) {
        if (it->second->load()) {
          it->first.join();
          it = streams.erase(it);
        } else {
          ++it;
        }
      }
      if (stopping) {
        refused = "the server is stopping";
      } else if (streams_open >= limits.max_streams) {
        refused = absl::StrCat("more than ", limits.max_streams, " streams open");
      } else if (streams_per_client[connection->peer] >= limits.max_streams_per_client) {
        refused = absl::StrCat("more than ", limits.max_streams_per_client, " streams open from ",
                               connection->peer);
      }
      if (refused.empty()) {
        auto done = std::make_shared<std::atomic<bool>>(false);
        try {
          std::thread thread([this, connection, done, response = std::move(response)]() mutable {
            run_stream(connection, response);
            connection->close_after = true;
            {
              std::lock_guard lock(mutex);
              --streams_open;
              if (--streams_per_client[connection->peer] == 0) {
                streams_per_client.erase(connection->peer);
              }
            }
            give_back(connection);
            done->store(true);
          });
          ++streams_open;
          ++streams_per_client[connection->peer];
          streams.emplace_back(std::move(thread), done);
          // The stream holds its connection, not a place among its client's busy requests.
          connection->streaming = true;
          released_peers.push_back(connection->peer);
        } catch (const std::system_error&) {
          refused = "no thread for another stream";
        }
      }
      if (refused.empty()) {
        wake();
        return;
      }
      ++counters.refused_stream_limit;
    }
    Response refusal;
    render_error(503, refused, refusal);
    refusal.headers.push_back({"Retry-After", "1"});
    connection->close_after = true;
    const std::string bytes = head_bytes(refusal, refusal.body.size(), false, true) + refusal.body;
    send_all(connection->fd, bytes, answer_deadline(bytes.size()));
    give_back(connection);
  }

  void run_worker() {
    while (true) {
      std::shared_ptr<Connection> connection;
      {
        std::unique_lock lock(mutex);
        work_ready.wait(lock, [&] { return stopping || !ready.empty(); });
        if (stopping) return;  // what waits is not run: stop() closes its connection
        connection = std::move(ready.front());
        ready.pop_front();
        ++counters.requests_handled;
      }
      Request request = std::move(connection->request);
      connection->request_version = request.version;
      Response response;
      dispatch(request, response);
      const bool head_only = request.method == "HEAD";
      if (response.stream && !head_only) {
        start_stream(connection, std::move(response));
        continue;
      }
      const std::string bytes =
          head_bytes(response, response.body.size(), false, connection->close_after) +
          (head_only ? std::string() : response.body);
      if (!send_all(connection->fd, bytes, answer_deadline(bytes.size()))) {
        connection->close_after = true;
      }
      give_back(connection);
    }
  }
};

Server::Server(ServerLimits limits) : state_(std::make_unique<State>(limits)) {}

Server::~Server() { stop(); }

void Server::route(std::string method, const std::string& path_pattern, Handler handler) {
  state_->routes.push_back(Route{
      std::move(method), std::regex(path_pattern, std::regex::ECMAScript), std::move(handler)});
}

void Server::set_head_check(HeadCheck check) { state_->head_check = std::move(check); }

void Server::set_error_renderer(ErrorRenderer renderer) {
  state_->error_renderer = std::move(renderer);
}

absl::StatusOr<int> Server::start(const std::string& host, int port) {
  State& s = *state_;
  if (s.io_thread.joinable() || s.stopping) {
    return absl::FailedPreconditionError("the HTTP server was started already");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int error =
          ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
      error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve ", host, ": ", ::gai_strerror(error)));
  }
  std::string why = "no address";
  for (addrinfo* address = found; address != nullptr && s.listen_fd < 0;
       address = address->ai_next) {
    const int fd = ::socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            address->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, address->ai_addr, address->ai_addrlen) == 0 && ::listen(fd, 1024) == 0) {
      s.listen_fd = fd;
    } else {
      why = std::strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  if (s.listen_fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":", port, ": ", why));
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(s.listen_fd, reinterpret_cast<sockaddr*>(&bound), &length);
  const int bound_port = bound.ss_family == AF_INET6
                             ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                             : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  s.epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  s.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s.epoll_fd < 0 || s.wake_fd < 0) {
    const std::string why = std::strerror(errno);
    for (int* fd : {&s.listen_fd, &s.epoll_fd, &s.wake_fd}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
    return absl::InternalError(absl::StrCat("epoll or eventfd: ", why));
  }
  for (const int fd : {s.listen_fd, s.wake_fd}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    ::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, fd, &event);
  }
  s.io_thread = std::thread([&s] { s.run_io(); });
  for (size_t i = 0; i < std::max<size_t>(1, s.limits.workers); ++i) {
    s.workers.emplace_back([&s] { s.run_worker(); });
  }
  return bound_port;
}

void Server::stop() {
  State& s = *state_;
  if (!s.io_thread.joinable()) return;
  s.stopping = true;
  // The I/O thread accepts nothing more and closes every connection it holds.
  s.wake();
  s.io_thread.join();
  {
    std::lock_guard lock(s.mutex);
    // What workers and streams hold: a writer blocked on a slow client, or a stream, sees its
    // socket fail at once.
    for (const int fd : s.all_fds) ::shutdown(fd, SHUT_RDWR);
  }
  s.work_ready.notify_all();
  for (std::thread& worker : s.workers) worker.join();
  s.workers.clear();
  std::list<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> streams;
  {
    std::lock_guard lock(s.mutex);
    streams.swap(s.streams);
  }
  for (auto& [thread, done] : streams) thread.join();
  // What the workers and streams held, and requests that waited for a worker.
  for (const auto& [fd, connection] : s.connections) ::close(fd);
  s.connections.clear();
  ::close(s.listen_fd);
  ::close(s.epoll_fd);
  ::close(s.wake_fd);
  s.listen_fd = s.epoll_fd = s.wake_fd = -1;
}

ServerCounters Server::counters() const {
  std::lock_guard lock(state_->mutex);
  return state_->counters;
}

}  // namespace tenon::http
