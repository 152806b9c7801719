// The REST surface's HTTP/1.1 server (common/http) against raw sockets on loopback: routing,
// keep-alive and pipelining, the head check before a body is read, and each limit a slow,
// careless or hostile client meets.
#include "http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tenon::http {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// A client socket: sends bytes, reads what comes within a deadline.
class RawClient {
 public:
  // From `source`, a loopback address (127.0.0.2 is another client to the server).
  explicit RawClient(int port, const char* source = "127.0.0.1") {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &local.sin_addr);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool send(absl::string_view bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Reads until `done(received)` holds, the peer closes, or `limit` passes.
  std::string read_until(const std::function<bool(const std::string&)>& done,
                         std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done(received_)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd wait{fd_, POLLIN, 0};
      if (::poll(&wait, 1, static_cast<int>(left.count())) <= 0) continue;
      char buffer[4096];
      const ssize_t got = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (got <= 0) {
        closed_ = true;
        break;
      }
      received_.append(buffer, static_cast<size_t>(got));
    }
    return received_;
  }
  std::string read_to_close(std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    return read_until([](const std::string&) { return false; }, limit);
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

size_t count_of(const std::string& text, const std::string& piece) {
  size_t count = 0;
  for (size_t at = text.find(piece); at != std::string::npos; at = text.find(piece, at + 1)) {
    ++count;
  }
  return count;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void start(ServerLimits limits = {}) {
    server_ = std::make_unique<Server>(limits);
    server_->route("GET", "/hello/([a-z]+)", [](const Request& request, Response& response) {
      response.body = absl::StrCat("hello ", request.matches[1], " ",
                                   request.query_value("greeting").value_or("-"));
    });
    server_->route("POST", "/echo", [](const Request& request, Response& response) {
      response.body = request.body;
    });
    server_->route("GET", "/big", [](const Request&, Response& response) {
      response.body = std::string(1 << 20, 'b');
    });
    server_->route("GET", "/forever", [](const Request&, Response& response) {
      response.stream = [](StreamWriter& writer) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return writer.write("tick\n");
      };
    });
    server_->route("GET", "/stream", [this](const Request&, Response& response) {
      response.stream = [this, sent = 0](StreamWriter& writer) mutable {
        if (sent == 3) {
          // The third piece is out: hold the stream open until the test lets it end.
          while (!release_streams_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
          return false;
        }
        return writer.write(absl::StrCat("piece ", sent++, "\n"));
      };
    });
    server_->set_head_check([](const Request& request) -> std::optional<Response> {
      if (request.path != "/echo" || request.header("authorization") == "yes") return std::nullopt;
      Response refusal;
      refusal.status = 401;
      refusal.body = "who are you\n";
      return refusal;
    });
    absl::StatusOr<int> port = server_->start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }
  void TearDown() override {
    release_streams_ = true;
    if (server_) server_->stop();
  }

  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::atomic<bool> release_streams_{false};
};

TEST_F(HttpServerTest, RoutesAnswerWithTheirCapturesAndQueryAndUnknownPathsOrMethodsAreRefused) {
  start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  client.send("GET /hello/world?greeting=good%20day&x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_THAT(client.read_until([](const std::string& got) { return got.find("day") != got.npos; }),
              AllOf(StartsWith("HTTP/1.1 200 OK\r\n"), HasSubstr("Content-Length: 20\r\n"),
                    HasSubstr("\r\n\r\nhello world good day")));
  RawClient other(port_);
  other.send("DELETE /hello/x HTTP/1.1\r\n\r\nGET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n");
  const std::string answers = other.read_to_close();
  EXPECT_THAT(answers, StartsWith("HTTP/1.1 405 Method Not Allowed\r\n"));
  EXPECT_THAT(answers, HasSubstr("Allow: GET\r\n"));
  EXPECT_THAT(answers, HasSubstr("HTTP/1.1 404 Not Found\r\n"));
  RawClient head(port_);
  head.send("HEAD /hello/x HTTP/1.1\r\nConnection: close\r\n\r\n");
  const std::string head_answer = head.read_to_close();
  EXPECT_THAT(head_answer, HasSubstr("Content-Length: 9\r\n"));
  EXPECT_THAT(head_answer, Not(HasSubstr("hello")));
}

TEST_F(HttpServerTest, RegressionPipelinedRequestsAreAllAnsweredInOrder) {
  // The HTTP library the REST surface used before answered only the first of these.
  start();
  RawClient client(port_);
  client.send(
      "GET /hello/one HTTP/1.1\r\n\r\n"
      "POST /echo HTTP/1.1\r\nAuthorization: yes\r\nContent-Length: 5\r\n\r\ntwo!!"
      "GET /hello/three HTTP/1.1\r\nConnection: close\r\n\r\n");
  const std::string answers = client.read_to_close();
  EXPECT_EQ(count_of(answers, "HTTP/1.1 200 OK"), 3u) << answers;
  const size_t one = answers.find("hello one");
  const size_t two = answers.find("two!!");
  const size_t three = answers.find("hello three");
  ASSERT_NE(one, std::string::npos);
  ASSERT_NE(two, std::string::npos);
  ASSERT_NE(three, std::string::npos);
  EXPECT_LT(one, two);
  EXPECT_LT(two, three);
  EXPECT_TRUE(client.closed());
}

TEST_F(HttpServerTest, TheHeadCheckRefusesBeforeTheBodyIsReadAndExpectContinueIsAnswered) {
  start();
  RawClient refused(port_);
  refused.send("POST /echo HTTP/1.1\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n");
  const std::string refusal = refused.read_to_close();
  EXPECT_THAT(refusal, StartsWith("HTTP/1.1 401 Unauthorized\r\n"));
  EXPECT_THAT(refusal, HasSubstr("who are you"));
  EXPECT_THAT(refusal, Not(HasSubstr("100 Continue")));

  RawClient allowed(port_);
  allowed.send(
      "POST /echo HTTP/1.1\r\nAuthorization: yes\r\nContent-Length: 4\r\n"
      "Expect: 100-continue\r\n\r\n");
  EXPECT_THAT(
      allowed.read_until([](const std::string& got) { return got.find("\r\n\r\n") != got.npos; }),
      StartsWith("HTTP/1.1 100 Continue\r\n\r\n"));
  allowed.send("body");
  EXPECT_THAT(
      allowed.read_until([](const std::string& got) { return got.find("body") != got.npos; }),
      HasSubstr("HTTP/1.1 200 OK"));
}

TEST_F(HttpServerTest, OversizedMalformedAndChunkedRequestsAreRefusedWithTheirStatus) {
  ServerLimits limits;
  limits.max_body_bytes = 100;
  limits.max_head_bytes = 256;
  start(limits);
  {
    // A path over 2 KiB (in a head the limit allows) is refused before it is routed.
    ServerLimits roomy;
    Server server(roomy);
    absl::StatusOr<int> port = server.start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok());
    RawClient client(*port);
    client.send("GET /" + std::string(3000, 'a') + " HTTP/1.1\r\n\r\n");
    EXPECT_THAT(client.read_to_close(), StartsWith("HTTP/1.1 414"));
  }
  struct Case {
    std::string request;
    std::string status;
  };
  const std::vector<Case> cases = {
      {"POST /echo HTTP/1.1\r\nAuthorization: yes\r\nContent-Length: 101\r\n\r\n", "413"},
      {"GET /hello/x HTTP/1.1\r\nX-Big: " + std::string(300, 'a') + "\r\n\r\n", "431"},
      {"GET /hello/x HTTP/1.1\r\nX-Big: " + std::string(300, 'a'), "431"},
      {"GET hello HTTP/1.1\r\n\r\n", "400"},
      {"GET /hello/x HTTP/2.0\r\n\r\n", "505"},
      {"GET /hello/x HTTP/1.1\r\nno colon here\r\n\r\n", "400"},
      {"POST /echo HTTP/1.1\r\nAuthorization: yes\r\nContent-Length: 3\r\nContent-Length: "
       "4\r\n\r\n",
       "400"},
      {"POST /echo HTTP/1.1\r\nAuthorization: yes\r\nContent-Length: -3\r\n\r\n", "400"},
      {"POST /echo HTTP/1.1\r\nAuthorization: yes\r\nTransfer-Encoding: chunked\r\n\r\n", "411"},
      {"POST /echo HTTP/1.1\r\nAuthorization: yes\r\nExpect: something\r\n\r\n", "417"},
      // Smuggling: an empty Transfer-Encoding before a real one, a bare LF hiding a header,
      // a NUL in the target.
      {"POST /echo HTTP/1.1\r\nAuthorization: yes\r\nTransfer-Encoding:\r\n"
       "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
       "411"},
      {"POST /echo HTTP/1.1\r\nAuthorization: yes\r\nX: a\nTransfer-Encoding: chunked\r\n"
       "Content-Length: 3\r\n\r\n",
       "400"},
      {std::string("GET /hello/x\0y HTTP/1.1\r\n\r\n", 28), "400"},
      {"GET /" + std::string(3000, 'a') + " HTTP/1.1\r\n\r\n", "431"},
  };
  for (const Case& each : cases) {
    RawClient client(port_);
    client.send(each.request);
    EXPECT_THAT(client.read_to_close(), StartsWith("HTTP/1.1 " + each.status))
        << each.request.substr(0, 80);
  }
  EXPECT_GE(server_->counters().malformed, 9u);
}

TEST_F(HttpServerTest, RegressionATrickledHeadIsCutOffAtItsDeadlineWithoutHoldingAWorker) {
  // One worker, and clients that send a header line now and then, as the slow-client attack
  // did: none of them holds the worker, and each is cut off at the head deadline.
  ServerLimits limits;
  limits.workers = 1;
  limits.head_timeout = absl::Seconds(1);
  start(limits);
  std::vector<std::unique_ptr<RawClient>> slow;
  for (int i = 0; i < 20; ++i) {
    slow.push_back(std::make_unique<RawClient>(port_));
    slow.back()->send("GET /hello/slow HTTP/1.1\r\n");
  }
  RawClient quick(port_);
  quick.send("GET /hello/quick HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(quick.read_to_close(), HasSubstr("hello quick"));
  // Still trickling: one header line every 200 ms, for 5 s. The 408 comes while they still
  // send (a deadline reset by every byte would never come while bytes keep arriving).
  std::string answer;
  for (int round = 0; round < 25 && answer.empty(); ++round) {
    for (auto& client : slow) client->send("X-Slow: 1\r\n");
    answer = slow.front()->read_until([](const std::string& got) { return !got.empty(); },
                                      std::chrono::milliseconds(200));
  }
  EXPECT_FALSE(answer.empty()) << "no answer while the client kept trickling";
  EXPECT_THAT(slow.front()->read_to_close(), StartsWith("HTTP/1.1 408 Request Timeout"));
  for (auto& client : slow) {
    client->read_to_close();
    EXPECT_TRUE(client->closed());
  }
  EXPECT_GE(server_->counters().timed_out, 20u);
}

TEST_F(HttpServerTest, OneClientsConnectionsAreCappedAndAnIdleConnectionCloses) {
  ServerLimits limits;
  limits.max_connections_per_client = 4;
  limits.idle_timeout = absl::Seconds(2);
  start(limits);
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 4; ++i) held.push_back(std::make_unique<RawClient>(port_));
  // The server counts a connection once it has accepted it: wait until the fourth is answered.
  held.back()->send("GET /hello/four HTTP/1.1\r\n\r\n");
  ASSERT_THAT(
      held.back()->read_until([](const std::string& got) { return got.find("four") != got.npos; }),
      HasSubstr("hello four"));
  RawClient fifth(port_);
  EXPECT_THAT(fifth.read_to_close(), StartsWith("HTTP/1.1 429 Too Many Requests"));
  EXPECT_EQ(server_->counters().refused_per_client_limit, 1u);
  // Idle connections close after the idle timeout, and the address may connect again.
  for (auto& client : held) {
    client->read_to_close();
    EXPECT_TRUE(client->closed());
  }
  RawClient again(port_);
  again.send("GET /hello/again HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(again.read_to_close(), HasSubstr("hello again"));
}

TEST_F(HttpServerTest, StreamsAreChunkedOnTheirOwnThreadsUpToTheirLimit) {
  ServerLimits limits;
  limits.workers = 1;
  limits.max_streams = 1;
  start(limits);
  RawClient watcher(port_);
  watcher.send("GET /stream HTTP/1.1\r\n\r\n");
  EXPECT_THAT(
      watcher.read_until([](const std::string& got) { return got.find("piece 2") != got.npos; }),
      AllOf(HasSubstr("Transfer-Encoding: chunked\r\n"), HasSubstr("8\r\npiece 0\n\r\n")));
  // The stream holds no worker: a plain request is answered; a second stream is refused.
  RawClient plain(port_);
  plain.send("GET /hello/x HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(plain.read_to_close(), HasSubstr("hello x"));
  RawClient second(port_);
  second.send("GET /stream HTTP/1.1\r\n\r\n");
  const std::string refused = second.read_to_close();
  EXPECT_THAT(refused, StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(refused, HasSubstr("Retry-After: 1\r\n"));
  release_streams_ = true;
  EXPECT_THAT(watcher.read_to_close(), HasSubstr("\r\n0\r\n\r\n"));
}

TEST_F(HttpServerTest, StopEndsOpenConnectionsAndStreamsAtOnce) {
  start();
  RawClient idle(port_);
  RawClient partial(port_);
  partial.send("GET /hello/x HTTP/1.1\r\n");
  RawClient watcher(port_);
  watcher.send("GET /forever HTTP/1.1\r\n\r\n");
  watcher.read_until([](const std::string& got) { return got.find("tick") != got.npos; });
  const auto before = std::chrono::steady_clock::now();
  server_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(2))
      << "a stream that never ends by itself held stop()";
  for (RawClient* client : {&idle, &partial, &watcher}) {
    client->read_to_close(std::chrono::seconds(2));
    EXPECT_TRUE(client->closed());
  }
}

TEST_F(HttpServerTest, AClientThatNeverReadsItsAnswersHoldsAtMostItsShareOfWorkers) {
  ServerLimits limits;
  limits.workers = 2;
  limits.max_busy_per_client = 1;
  limits.head_timeout = absl::Seconds(30);  // answers are not cut off during the test
  start(limits);
  // Four connections, each with twenty pipelined requests for 1 MiB answers, none of them read:
  // once the sockets' buffers are full, each connection's worker waits to write the rest.
  std::vector<std::unique_ptr<RawClient>> greedy;
  std::string requests;
  for (int i = 0; i < 20; ++i) requests += "GET /big HTTP/1.1\r\n\r\n";
  for (int i = 0; i < 4; ++i) {
    greedy.push_back(std::make_unique<RawClient>(port_));
    greedy.back()->send(requests);
  }
  // Time for the answers to fill every buffer on the way (loopback's are several MiB).
  std::this_thread::sleep_for(std::chrono::seconds(3));
  // Another client is answered by the other worker, at once.
  RawClient other(port_, "127.0.0.2");
  other.send("GET /hello/other HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(other.read_to_close(std::chrono::seconds(5)), HasSubstr("hello other"));
}

TEST_F(HttpServerTest, BodiesInFlightShareABudgetAndABodyBeyondItIsRefusedUnread) {
  ServerLimits limits;
  limits.max_buffered_body_bytes = 100;
  start(limits);
  // The first asks before sending its body: the 100 Continue says its head is in and its 80
  // bytes reserved.
  RawClient first(port_);
  first.send(
      "POST /echo HTTP/1.1\r\nAuthorization: yes\r\nContent-Length: 80\r\n"
      "Expect: 100-continue\r\n\r\n");
  ASSERT_THAT(
      first.read_until([](const std::string& got) { return got.find("\r\n\r\n") != got.npos; }),
      StartsWith("HTTP/1.1 100 Continue"));
  first.send("abc");
  RawClient second(port_);
  second.send("POST /echo HTTP/1.1\r\nAuthorization: yes\r\nContent-Length: 80\r\n\r\n");
  const std::string refused = second.read_to_close();
  EXPECT_THAT(refused, StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(refused, HasSubstr("Retry-After: 1\r\n"));
  // The first body completes, and its budget is free again.
  first.send(std::string(77, 'x'));
  EXPECT_THAT(first.read_until([](const std::string& got) { return got.find("xxx") != got.npos; }),
              HasSubstr("\r\n\r\nHTTP/1.1 200 OK"));
  RawClient third(port_);
  third.send(
      "POST /echo HTTP/1.1\r\nAuthorization: yes\r\nContent-Length: 80\r\n"
      "Connection: close\r\n\r\n" +
      std::string(80, 'y'));
  EXPECT_THAT(third.read_to_close(), StartsWith("HTTP/1.1 200"));
}

TEST(RequestTest, QueryValuesAreWholeAndDecodedAndHeadersIgnoreCase) {
  Request request;
  request.target = "/v1/devices?selector=site%3Dlab,tier=a=b&empty=&plus=a+b&flag";
  request.headers = {{"Content-Type", "application/json"}};
  EXPECT_EQ(request.query_value("selector"), "site=lab,tier=a=b");
  EXPECT_EQ(request.query_value("empty"), "");
  EXPECT_EQ(request.query_value("plus"), "a b");
  EXPECT_EQ(request.query_value("flag"), "");
  EXPECT_EQ(request.query_value("missing"), std::nullopt);
  EXPECT_EQ(request.header("content-type"), "application/json");
  EXPECT_EQ(request.header("accept"), "");
  request.target = "/v1/devices";
  EXPECT_EQ(request.query_value("selector"), std::nullopt);
}

}  // namespace
}  // namespace tenon::http
