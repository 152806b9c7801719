// The controller core over a real store (SQLite or a private PostgreSQL), the real catalog and
// the real linker, with agent sessions recorded in memory: the fixture of the controller's tests.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "blob_store.h"
#include "controller.h"
#include "example_objects.h"
#include "fleet_composer.h"
#include "gtest/gtest.h"
#include "open_store.h"
#include "private_postgres.h"
#include "recording_session.h"
#include "simulated_devices.h"
#include "tenonctl_defaults.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

using test_support::control_loop_app;

inline v1::Object device(const std::string& name, const std::string& site) {
  return test_support::site_device(name, site);
}

inline v1::Object deployment(const std::string& name, const std::string& app,
                             const std::string& site) {
  v1::Object object;
  v1::Deployment* deployment = object.mutable_deployment();
  deployment->mutable_metadata()->set_name(name);
  deployment->mutable_spec()->set_app(app);
  (*deployment->mutable_spec()->mutable_selector()->mutable_match_labels())["site"] = site;
  return object;
}

enum class StoreKind { kSqlite, kPostgres };

inline std::string store_kind_name(const ::testing::TestParamInfo<StoreKind>& info) {
  return info.param == StoreKind::kSqlite ? "sqlite" : "postgres";
}

// The controller over a store of the kind store_kind() names: a SQLite file in the test's
// directory, or a database of its own on the test binary's private PostgreSQL server.
class ControllerFixture : public ::testing::Test {
 protected:
  virtual StoreKind store_kind() const = 0;

  void SetUp() override {
    char pattern[] = "/tmp/tenon-controller-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    if (store_kind() == StoreKind::kPostgres) {
      TENON_SETUP_POSTGRES_DATABASE(database_);
    }
    ASSERT_NO_FATAL_FAILURE(reopen_store());
    auto blobs = BlobStore::open(dir_ + "/blobs");
    ASSERT_TRUE(blobs.ok()) << blobs.status();
    blobs_ = std::make_unique<BlobStore>(std::move(*blobs));
    FleetComposerConfig config;
    config.catalog.source_root = TENON_SOURCE_DIR;
    config.catalog.archive_root = TENON_ARCHIVE_ROOT;
    config.builder.compiler = defaults::kCompiler;
    for (const char* option : defaults::kLinkOptions) config.builder.link_options.push_back(option);
    config.builder.linker_script = defaults::kLinkerScript;
    config.builder.cache_dir = dir_ + "/cache";
    auto composer = FleetComposer::create(config, blobs_.get());
    ASSERT_TRUE(composer.ok()) << composer.status();
    composer_ = std::move(*composer);
    controller_ = make_controller(ControllerConfig{});
  }
  void TearDown() override {
    controller_.reset();
    store_.reset();
    database_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Opens the test's store (again: what was committed before is read back).
  void reopen_store() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<Store>> store =
        store_kind() == StoreKind::kSqlite ? open_store("sqlite:" + dir_ + "/controller.db", dir_)
                                           : open_store(database_->url(), dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  // What the session received once every committed desired state was handed over.
  std::vector<v1::ControllerMessage> sent(RecordingSession& session) {
    controller_->wait_for_sends();
    return session.take();
  }

  std::unique_ptr<Controller> make_controller(const ControllerConfig& config) {
    absl::StatusOr<std::unique_ptr<Controller>> created =
        Controller::create(config, store_.get(), blobs_.get(), composer_.get());
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *std::move(created) : nullptr;
  }

  absl::StatusOr<v1::ApplyResponse> apply(std::vector<v1::Object> objects, bool dry = false) {
    v1::ApplyRequest request;
    for (v1::Object& object : objects) *request.add_objects() = std::move(object);
    request.set_dry_run(dry);
    return controller_->apply(request);
  }

  // Enrolls `name` with a fresh token and returns its credential.
  std::string enroll(const std::string& name) {
    v1::CreateBootstrapTokenRequest token_request;
    token_request.set_device_name(name);
    auto token = controller_->create_bootstrap_token(token_request);
    EXPECT_TRUE(token.ok()) << token.status();
    v1::EnrollRequest request;
    request.set_bootstrap_token(token->token());
    request.set_device_name(name);
    *request.mutable_profile() = test_support::simulated_device_profile();
    auto response = controller_->enroll(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->credential() : "";
  }

  std::shared_ptr<RecordingSession> connect(const std::string& name, const std::string& credential,
                                            uint64_t acknowledged = 0) {
    auto session = std::make_shared<RecordingSession>();
    v1::Hello hello;
    hello.set_device_name(name);
    hello.set_credential(credential);
    hello.set_acknowledged_desired_state_version(acknowledged);
    *hello.mutable_profile() = test_support::simulated_device_profile();
    absl::Status opened = controller_->open_session(session, hello);
    EXPECT_TRUE(opened.ok()) << opened;
    return session;
  }

  static std::optional<v1::DesiredState> last_desired(
      const std::vector<v1::ControllerMessage>& messages) {
    std::optional<v1::DesiredState> found;
    for (const v1::ControllerMessage& message : messages) {
      if (message.has_desired_state()) found = message.desired_state();
    }
    return found;
  }

  std::string dir_;
  std::optional<test_support::TemporaryPostgresDatabase> database_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<FleetComposer> composer_;
  std::unique_ptr<Controller> controller_;
};

}  // namespace tenon::controller
