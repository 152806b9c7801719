// The REST face of a real tenon-controller over loopback: the FleetService messages as JSON under
// /v1/, errors as {code, status, message} with their HTTP statuses, the bearer token, and the
// health and readiness probes.
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "child_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shell_command.h"

namespace {

using namespace std::chrono_literals;
using tenon::test_support::ChildProcess;
using tenon::test_support::eventually;
using tenon::test_support::run_shell;
using ::testing::HasSubstr;
using ::testing::Not;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class RestApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tenon-rest-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    controller_ = ChildProcess::start(
        {TENON_CONTROLLER_BINARY, "--data-dir", dir_ + "/controller", "--listen", "127.0.0.1:0",
         "--http-listen", "127.0.0.1:0", "--ready-file", dir_ + "/ready.json"},
        dir_ + "/controller.log");
    ASSERT_TRUE(controller_.has_value());
    ASSERT_TRUE(eventually(
                    [&] {
                      return std::filesystem::exists(dir_ + "/ready.json") ||
                             !controller_->running();
                    },
                    20s) &&
                std::filesystem::exists(dir_ + "/ready.json"))
        << controller_->log();
    address_ = nlohmann::json::parse(read_file(dir_ + "/ready.json"))["http_address"];
    token_ = read_file(dir_ + "/controller/operator-token");
    token_.erase(token_.find_last_not_of('\n') + 1);
  }
  void TearDown() override {
    if (controller_) controller_->stop();
    std::filesystem::remove_all(dir_);
  }

  struct Reply {
    int http = 0;
    nlohmann::json body;
  };
  // curl with the token (unless `authorized` is false); the body is written to a file first.
  Reply call(const std::string& method, const std::string& path, const std::string& body = "",
             bool authorized = true) {
    std::ofstream(dir_ + "/body.json") << body;
    const std::string command =
        "curl -s -o " + dir_ + "/reply.json -w '%{http_code}' -X " + method +
        (authorized ? " -H 'Authorization: Bearer " + token_ + "'" : std::string()) +
        " -H 'Content-Type: application/json'" +
        (body.empty() ? std::string() : " --data-binary @" + dir_ + "/body.json") + " http://" +
        address_ + path;
    Reply reply;
    reply.http = std::stoi(run_shell(command).output);
    reply.body = nlohmann::json::parse(read_file(dir_ + "/reply.json"), nullptr, false);
    return reply;
  }

  std::string dir_, address_, token_;
  std::optional<ChildProcess> controller_;
};

// Defects of the hostile-input review, each named after the bug it reproduces.
using RegressionRestApiTest = RestApiTest;

TEST_F(RestApiTest, ServesTheFleetApiAsJson) {
  Reply created = call("POST", "/v1/apply",
                       R"({"objects": [{"device": {"metadata": {"name": "edge-7",
                           "labels": {"site": "lab"}}}}]})");
  ASSERT_EQ(created.http, 200) << created.body.dump();
  EXPECT_EQ(created.body["results"][0]["action"], "CHANGE_ACTION_CREATE");
  Reply got = call("GET", "/v1/devices/edge-7");
  ASSERT_EQ(got.http, 200);
  EXPECT_EQ(got.body["device"]["status"]["connection_state"], "CONNECTION_STATE_NOT_ENROLLED");
  Reply listed = call("GET", "/v1/devices?selector=site%3Dlab");
  ASSERT_EQ(listed.http, 200);
  EXPECT_EQ(listed.body["objects"].size(), 1u);
  Reply token = call("POST", "/v1/bootstrap-tokens", R"({"device_name": "edge-7"})");
  ASSERT_EQ(token.http, 200);
  EXPECT_THAT(token.body.value("token", ""), HasSubstr("tenon-bootstrap-"));
  Reply deleted = call("DELETE", "/v1/devices/edge-7");
  EXPECT_EQ(deleted.http, 200);
  EXPECT_EQ(call("GET", "/v1/devices/edge-7").http, 404);
  EXPECT_EQ(run_shell("curl -s http://" + address_ + "/healthz").output, "ok\n");
}

TEST_F(RestApiTest, ErrorsCarryTheirCodeStatusAndMessage) {
  Reply missing = call("GET", "/v1/apps/nope");
  EXPECT_EQ(missing.http, 404);
  EXPECT_EQ(missing.body["status"], "NOT_FOUND");
  EXPECT_EQ(missing.body["code"], 5);
  Reply garbage = call("POST", "/v1/apply", "{not json");
  EXPECT_EQ(garbage.http, 400);
  EXPECT_EQ(garbage.body["status"], "INVALID_ARGUMENT");
  Reply bad_name =
      call("POST", "/v1/apply", R"({"objects": [{"device": {"metadata": {"name": "Edge_7"}}}]})");
  EXPECT_EQ(bad_name.http, 400);
  EXPECT_THAT(bad_name.body.value("message", ""), HasSubstr("metadata.name"));
  Reply dangling = call("POST", "/v1/apply",
                        R"({"objects": [{"deployment": {"metadata": {"name": "d"},
                            "spec": {"app": "ghost", "selector": {"match_labels": {"a": "b"}}}}}]})");
  EXPECT_EQ(dangling.http, 404);
  // 2^32 + 3 used to become a page of 3.
  Reply huge_page = call("GET", "/v1/devices?page_size=4294967299");
  EXPECT_EQ(huge_page.http, 400);
  EXPECT_THAT(huge_page.body.value("message", ""), HasSubstr("does not fit 32 bits"));
  Reply derived = call("DELETE", "/v1/instances/whatever");
  EXPECT_EQ(derived.http, 400);
  Reply anonymous = call("GET", "/v1/devices", "", /*authorized=*/false);
  EXPECT_EQ(anonymous.http, 401);
  EXPECT_EQ(anonymous.body["status"], "UNAUTHENTICATED");
  // Nothing of the refused requests was stored.
  EXPECT_EQ(call("GET", "/v1/deployments").body.value("objects", nlohmann::json::array()).size(),
            0u);
}

uint64_t rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

TEST_F(RestApiTest, LargeBodiesAreRefusedBeforeTheyAreRead) {
  // 64 MiB: four times the limit.
  const std::string big = dir_ + "/big.json";
  {
    std::ofstream out(big, std::ios::binary);
    const std::string block(1 << 20, ' ');
    for (int i = 0; i < 64; ++i) out << block;
  }
  const uint64_t rss_before = rss_kib(controller_->pid());
  auto upload = [&](const std::string& headers) {
    return run_shell(
               "curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: "
               "application/json' " +
               headers + " --data-binary @" + big + " http://" + address_ + "/v1/apply")
        .output;
  };
  const std::string token = "-H 'Authorization: Bearer " + token_ + "' ";
  // With and without curl asking first (Expect: 100-continue): no token is 401, a body beyond
  // the limit 413, and none of the 64 MiB is kept.
  EXPECT_EQ(upload(""), "401");
  EXPECT_EQ(upload("-H 'Expect:'"), "401");
  EXPECT_EQ(upload(token + "-H 'Expect:'"), "413");
  EXPECT_LT(rss_kib(controller_->pid()), rss_before + 32 * 1024) << "a body was buffered";
}

TEST_F(RegressionRestApiTest, SlowClientsDoNotStallHealthOrTheApi) {
  // Sixty connections that each send a byte of their request every half second: eight once
  // stalled the HTTP library's default pool, and sixty-four its 64 workers, since a connection held
  // a worker from its first byte. Now reading a request holds no worker: /healthz and the API
  // still answer, at once. (The server cuts each one off at its head deadline, 10 s.)
  std::ofstream(dir_ + "/slow.py") << R"(
import socket, sys, time
host, port = sys.argv[1].rsplit(':', 1)
connections = []
for _ in range(60):
    c = socket.create_connection((host, int(port)))
    c.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\n')
    connections.append(c)
for _ in range(12):
    time.sleep(0.5)
    for c in connections:
        try: c.sendall(b'X')
        except OSError: pass
)";
  std::optional<ChildProcess> slow =
      ChildProcess::start({"python3", dir_ + "/slow.py", address_}, dir_ + "/slow.log");
  ASSERT_TRUE(slow.has_value());
  std::this_thread::sleep_for(2s);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(run_shell("curl -s --max-time 3 http://" + address_ + "/healthz").output, "ok\n");
  EXPECT_EQ(call("GET", "/v1/devices").http, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  slow->signal(SIGKILL);
}

TEST_F(RegressionRestApiTest, PipelinedRequestsAreAllAnswered) {
  // Three requests in one write on one connection: only the first used to be answered.
  std::ofstream(dir_ + "/pipeline.py") << R"(
import socket, sys
host, port = sys.argv[1].rsplit(':', 1)
token = sys.argv[2]
c = socket.create_connection((host, int(port)))
c.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'
          + b'GET /v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + token.encode()
          + b'\r\n\r\n'
          + b'GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
c.settimeout(10)
received = b''
while True:
    piece = c.recv(65536)
    if not piece: break
    received += piece
sys.stdout.write(received.decode())
)";
  const std::string answers =
      run_shell("python3 " + dir_ + "/pipeline.py " + address_ + " " + token_).output;
  size_t answered = 0;
  for (size_t at = answers.find("HTTP/1.1 200"); at != std::string::npos;
       at = answers.find("HTTP/1.1 200", at + 1)) {
    ++answered;
  }
  EXPECT_EQ(answered, 3u) << answers;
  EXPECT_THAT(answers, HasSubstr("\"ready\":true"));
}

TEST_F(RestApiTest, RolloutsAreControlledUnderTheirDeployment) {
  Reply missing = call("POST", "/v1/deployments/ghost/rollout", R"({"action": "ACTION_PAUSE"})");
  EXPECT_EQ(missing.http, 404) << missing.body.dump();
  ASSERT_EQ(call("POST", "/v1/apply",
                 R"({"objects": [{"app": {"metadata": {"name": "hello"},
                     "spec": {"program": "hello"}}},
                     {"deployment": {"metadata": {"name": "d"}, "spec": {"app": "hello",
                     "selector": {"match_labels": {"site": "lab"}}}}}]})")
                .http,
            200);
  Reply unset = call("POST", "/v1/deployments/d/rollout", "{}");
  EXPECT_EQ(unset.http, 400) << unset.body.dump();
  // No staged rollout is under way: there is nothing to pause.
  Reply pause = call("POST", "/v1/deployments/d/rollout", R"({"action": "ACTION_PAUSE"})");
  EXPECT_EQ(pause.http, 400) << pause.body.dump();
  EXPECT_EQ(pause.body["status"], "FAILED_PRECONDITION");
}

TEST_F(RestApiTest, SelectorsReadTheWholeTermAndOtherMethodsAreRefusedAtOnce) {
  ASSERT_EQ(call("POST", "/v1/apply",
                 R"({"objects": [{"device": {"metadata": {"name": "edge-1",
                     "labels": {"site": "lab", "role": "a"}}}}]})")
                .http,
            200);
  auto names = [&](const std::string& query) {
    Reply reply = call("GET", "/v1/devices?" + query);
    std::vector<std::string> found;
    for (const auto& object : reply.body.value("objects", nlohmann::json::array())) {
      found.push_back(object["device"]["metadata"]["name"]);
    }
    return found;
  };
  // "selector=site=lab" lost its "=lab" and silently matched nothing.
  EXPECT_EQ(names("selector=site=lab"), std::vector<std::string>{"edge-1"});
  EXPECT_EQ(names("selector=site%3Dlab,role%3Da"), std::vector<std::string>{"edge-1"});
  EXPECT_TRUE(names("selector=site=elsewhere").empty());
  // kubectl's terms: a bare key asks that the label exists; sets; a malformed term is refused.
  EXPECT_EQ(names("selector=site"), std::vector<std::string>{"edge-1"});
  EXPECT_TRUE(names("selector=%21site").empty());
  EXPECT_EQ(names("selector=site%20in%20%28lab,plant%29"), std::vector<std::string>{"edge-1"});
  EXPECT_TRUE(names("selector=site%20notin%20%28lab%29").empty());
  Reply malformed = call("GET", "/v1/devices?selector=site%20in%20%28lab");
  EXPECT_EQ(malformed.http, 400);
  EXPECT_THAT(malformed.body.value("message", ""), HasSubstr("parentheses"));
  // PUT without a body waited for one until the read timeout.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(run_shell("curl -s -o /dev/null -w '%{http_code}' -X PUT http://" + address_ +
                      "/v1/devices/edge-1")
                .output,
            "405");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST_F(RestApiTest, AWatchFromAListsVersionStreamsEachLaterChangeAsAJsonLine) {
  ASSERT_EQ(call("POST", "/v1/apply",
                 R"({"objects": [{"device": {"metadata": {"name": "edge-1",
                     "labels": {"site": "lab"}}}}]})")
                .http,
            200);
  Reply listed = call("GET", "/v1/devices");
  ASSERT_EQ(listed.http, 200);
  const std::string version = listed.body.value("resource_version", "0");
  ASSERT_NE(version, "0") << listed.body.dump();
  // Changes after the list: one to watch (site=lab), one the selector leaves out.
  ASSERT_EQ(call("POST", "/v1/apply",
                 R"({"objects": [{"device": {"metadata": {"name": "edge-2",
                     "labels": {"site": "lab"}}}},
                     {"device": {"metadata": {"name": "edge-3", "labels": {"site": "x"}}}}]})")
                .http,
            200);
  const std::string stream =
      run_shell("curl -s -N --max-time 2 -H 'Authorization: Bearer " + token_ + "' 'http://" +
                address_ + "/v1/watch/devices?selector=site%3Dlab&resource_version=" + version +
                "'")
          .output;
  std::vector<nlohmann::json> events;
  for (absl::string_view line : absl::StrSplit(stream, '\n', absl::SkipEmpty())) {
    events.push_back(nlohmann::json::parse(std::string(line), nullptr, false));
  }
  ASSERT_EQ(events.size(), 1u) << stream;
  EXPECT_EQ(events[0]["type"], "TYPE_ADDED");
  EXPECT_EQ(events[0]["object"]["device"]["metadata"]["name"], "edge-2");
  Reply bad = call("GET", "/v1/watch/devices?selector=site%20in%20%28");
  EXPECT_EQ(bad.http, 400);
}

TEST_F(RestApiTest, ListsOfListsAndDeepNestingAreRefused) {
  // The protobuf JSON parser flattened [[...]] into the list and applied what was inside.
  Reply flattened =
      call("POST", "/v1/apply", R"({"objects": [[{"device": {"metadata": {"name": "edge-9"}}}]]})");
  EXPECT_EQ(flattened.http, 400) << flattened.body.dump();
  EXPECT_THAT(flattened.body.value("message", ""), HasSubstr("array inside an array"));
  EXPECT_EQ(call("GET", "/v1/devices/edge-9").http, 404);
  Reply deep =
      call("POST", "/v1/apply",
           R"({"objects": [)" + std::string(100000, '{') + std::string(100000, '}') + "]}");
  EXPECT_EQ(deep.http, 400);
  EXPECT_THAT(deep.body.value("message", ""), HasSubstr("nested deeper than"));
  // Brackets inside strings are text, not structure.
  Reply text = call("POST", "/v1/apply",
                    R"({"objects": [{"device": {"metadata": {"name": "edge-8",
                        "labels": {"note": "[[[[{{{{"}}}}]})");
  EXPECT_EQ(text.http, 400) << "label value rules, not the shape check";
  EXPECT_THAT(text.body.value("message", ""), Not(HasSubstr("array inside")));
}

// Found by rest_json_fuzz: protobuf's JSON parser also takes single-quoted strings, and a '"'
// inside one hid the brackets after it from the nesting check, so a list of lists got through.
TEST_F(RestApiTest, SingleQuotedStringsDoNotHideAListOfLists) {
  Reply hidden = call("POST", "/v1/apply",
                      R"({"objects": [{"device": {"metadata": {"name": "edge-8", "uid": 'u"'}}},)"
                      R"( [[{"device": {"metadata": {"name": "edge-9"}}}]],)"
                      R"( {"device": {"metadata": {"name": "edge-10", "uid": 'v"'}}}]})");
  EXPECT_EQ(hidden.http, 400) << hidden.body.dump();
  EXPECT_THAT(hidden.body.value("message", ""), HasSubstr("an array inside an array"));
  EXPECT_EQ(call("GET", "/v1/devices/edge-9").http, 404);
  Reply quoted = call("POST", "/v1/apply",
                      R"({'objects': [{'device': {'metadata': {'name': 'edge-7',)"
                      R"( 'labels': {'site': 'lab[['}}}}]})");
  EXPECT_THAT(quoted.body.dump(), Not(HasSubstr("an array inside an array")))
      << "brackets inside a single-quoted string are text";
}

TEST_F(RestApiTest, TaskTimesThatWouldOverflowTheAnalysisAreRefused) {
  // period = wcet = 2^64 - 1 was once composed as SCHEDULABLE at a utilisation of ~1e-16.
  const std::string huge_task =
      R"({"name": "t", "period_ns": "18446744073709551615", "wcet_ns": "18446744073709551615"})";
  Reply composed = call("POST", "/v1/compose",
                        R"({"app_spec": {"program": "control-loop", "tasks": [)" + huge_task +
                            R"(]}, "profile": {"arch": "ARCH_X86_64", "cores": 2}})");
  EXPECT_EQ(composed.http, 400) << composed.body.dump();
  EXPECT_THAT(composed.body.value("message", ""), HasSubstr("app_spec: spec.tasks[0].period_ns"));
  Reply applied = call("POST", "/v1/apply",
                       R"({"objects": [{"app": {"metadata": {"name": "big"}, "spec": {"program":
                           "control-loop", "tasks": [)" +
                           huge_task + R"(]}}}]})");
  EXPECT_EQ(applied.http, 400) << applied.body.dump();
  EXPECT_THAT(applied.body.value("message", ""), HasSubstr("spec.tasks[0].period_ns"));
}

TEST_F(RestApiTest, ReadyzSaysWhetherTheStoreAnswersNowAndHealthzThatTheProcessServes) {
  // Neither probe needs the operator token.
  Reply ready = call("GET", "/readyz", "", /*authorized=*/false);
  EXPECT_EQ(ready.http, 200);
  EXPECT_EQ(ready.body, nlohmann::json::parse(
                            R"({"ready": true, "checks": {"store": "ok", "object-cache": "ok"}})"));
  EXPECT_EQ(run_shell("curl -s -w '%{http_code}' 'http://" + address_ + "/readyz?verbose'").output,
            "[+]store ok\n[+]object-cache ok\nreadyz check passed\n200");

  // Another connection holds SQLite's write lock on the controller's store (its --data-dir's
  // controller.db): once BEGIN IMMEDIATE returns, the lock is held, so the store cannot answer a
  // transaction until it is let go. /readyz says so after SQLite's busy timeout.
  const std::string database = dir_ + "/controller/controller.db";
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open_v2(database.c_str(), &other, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(other);
  // (An answer is reused for a second, so the first probe may still say ready.)
  Reply locked;
  ASSERT_TRUE(eventually(
      [&] {
        locked = call("GET", "/readyz", "", /*authorized=*/false);
        return locked.http == 503;
      },
      30s));
  EXPECT_EQ(locked.body["ready"], false) << locked.body.dump();
  EXPECT_THAT(locked.body["checks"].value("store", ""), HasSubstr(database));
  EXPECT_THAT(locked.body["checks"].value("store", ""), HasSubstr("database is locked"));
  EXPECT_EQ(locked.body["checks"]["object-cache"], "ok");
  const std::string verbose =
      run_shell("curl -s -w '%{http_code}' 'http://" + address_ + "/readyz?verbose'").output;
  EXPECT_THAT(verbose, HasSubstr("[-]store failed: " + database));
  EXPECT_THAT(verbose,
              HasSubstr("database is locked\n[+]object-cache ok\nreadyz check failed\n503"));
  // Alive all the same: /healthz does not touch the store.
  EXPECT_EQ(
      run_shell("curl -s -w '%{http_code}' --max-time 3 http://" + address_ + "/healthz").output,
      "ok\n200");

  // Let go: ready again at once.
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_close(other), SQLITE_OK);
  EXPECT_TRUE(
      eventually([&] { return call("GET", "/readyz", "", /*authorized=*/false).http == 200; }, 5s));
}

}  // namespace
